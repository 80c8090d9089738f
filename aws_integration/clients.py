"""The one place boto3 clients are made.

The endpoint (real AWS or the stand-in) is configuration: settings.AWS_ENDPOINT_URL.
Retries use botocore's adaptive mode (throttling and 5xx, with backoff).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.loaders import Loader
from django.conf import settings

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_eks import EKSClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_identitystore import IdentityStoreClient
    from mypy_boto3_organizations import OrganizationsClient
    from mypy_boto3_rds import RDSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sso_admin import SSOAdminClient
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import CredentialsTypeDef

# botocore parses a service's JSON model once per session; sessions made per assumed role
# (one per member account) share this loader so the models are parsed once per process.
_shared_loader: Loader = botocore.session.get_session().get_component("data_loader")


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call ("NoSuchEntity"), or "" when it has none."""
    return exc.response.get("Error", {}).get("Code", "") or ""


def retry_config(max_attempts: int | None = None, max_pool_connections: int = 20) -> Config:
    return Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts or settings.AWS_MAX_ATTEMPTS},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=60,
    )


def make_session(
    credentials: Mapping[str, Any] | None = None, region: str | None = None
) -> boto3.Session:
    """A boto3 session from Portcullis's own credentials, or from assumed-role credentials."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _shared_loader)
    kwargs: dict[str, Any] = {
        "botocore_session": core,
        "region_name": region or settings.AWS_DEFAULT_REGION,
    }
    if credentials:
        kwargs.update(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials.get("SessionToken"),
        )
    return boto3.Session(**kwargs)


@overload
def client(
    service: Literal["ec2"],
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> EC2Client: ...
@overload
def client(
    service: Literal["eks"],
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> EKSClient: ...
@overload
def client(
    service: Literal["iam"],
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> IAMClient: ...
@overload
def client(
    service: Literal["identitystore"],
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> IdentityStoreClient: ...
@overload
def client(
    service: Literal["organizations"],
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> OrganizationsClient: ...
@overload
def client(
    service: Literal["rds"],
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> RDSClient: ...
@overload
def client(
    service: Literal["sqs"],
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> SQSClient: ...
@overload
def client(
    service: Literal["sso-admin"],
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> SSOAdminClient: ...
@overload
def client(
    service: Literal["sts"],
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> STSClient: ...
# A service named at run time (a sync unit's): its calls are not checked.
@overload
def client(
    service: str,
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> Any: ...
def client(
    service: str,
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    max_attempts: int | None = None,
) -> Any:
    session = session or make_session(region=region)
    kwargs: dict[str, Any] = {"config": retry_config(max_attempts)}
    if region:
        kwargs["region_name"] = region
    if settings.AWS_ENDPOINT_URL:
        kwargs["endpoint_url"] = settings.AWS_ENDPOINT_URL
    return session.client(service, **kwargs)  # type: ignore[call-overload]  # typed above


def assume_role(
    role_arn: str,
    *,
    session_name: str = "portcullis",
    external_id: str | None = None,
    duration_seconds: int = 3600,
    session: boto3.Session | None = None,
) -> CredentialsTypeDef:
    """Credentials for a role, through sts:AssumeRole (with the External ID when given)."""
    kwargs: dict[str, Any] = {
        "RoleArn": role_arn,
        "RoleSessionName": session_name,
        "DurationSeconds": duration_seconds,
    }
    if external_id:
        kwargs["ExternalId"] = external_id
    return client("sts", session=session).assume_role(**kwargs)["Credentials"]


def session_for_account(
    account_id: str, role_name: str, *, external_id: str | None = None, region: str | None = None
) -> boto3.Session:
    creds = assume_role(f"arn:aws:iam::{account_id}:role/{role_name}", external_id=external_id)
    return make_session(creds, region=region)
