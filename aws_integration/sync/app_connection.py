"""What a sync needs to know about an app, as plain values that worker threads can read
without touching the database, and the AWS sessions it opens with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_integration import clients
from aws_integration.aws_settings import get_aws_settings

if TYPE_CHECKING:
    import boto3

    from aws_integration.models import AwsApp

SESSION_NAME = "portcullis-sync"


@dataclass(frozen=True)
class SyncTarget:
    """An app's connection settings, read once in the main thread."""

    app_id: int
    management_account_id: str
    role_name: str
    external_id: str
    regions: tuple[str, ...]
    organization_management: bool
    identity_center: bool
    identity_center_region: str
    instance_arn: str
    identity_store_id: str

    @classmethod
    def for_app(cls, app: AwsApp, external_id: str | None = None) -> SyncTarget:
        if external_id is None:
            external_id = get_aws_settings().external_id
        return cls(
            app_id=app.pk,
            management_account_id=app.management_account_id,
            role_name=app.ingester_role_name,
            external_id=external_id,
            regions=tuple(app.regions or ()),
            organization_management=app.organization_management,
            identity_center=app.identity_center_management,
            identity_center_region=app.identity_center_region,
            instance_arn=app.identity_center_instance_arn,
            identity_store_id=app.identity_store_id,
        )

    def role_arn(self, account_id: str) -> str:
        return f"arn:aws:iam::{account_id}:role/{self.role_name}"

    def session(self, account_id: str, region: str | None = None) -> boto3.Session:
        """A session in ``account_id`` through its ingester role (sts:AssumeRole with the
        External ID)."""
        credentials = clients.assume_role(
            self.role_arn(account_id), external_id=self.external_id, session_name=SESSION_NAME
        )
        return clients.make_session(credentials, region=region)

    def management_clients(self, session: boto3.Session) -> dict[str, Any]:
        """Clients for the management account's services. boto3 clients are thread-safe
        once made, so these are shared by the worker threads."""
        made: dict[str, Any] = {"organizations": clients.client("organizations", session=session)}
        if self.identity_center:
            region = self.identity_center_region
            made["sso-admin"] = clients.client("sso-admin", session=session, region=region)
            made["identitystore"] = clients.client("identitystore", session=session, region=region)
        return made
