"""The organization: OUs and member accounts, then everything in them, in parallel."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings

from aws_integration import clients
from demo.seed.base import (
    INGESTER_ROLE,
    MEMBER_ACCOUNT_ROLE,
    REGIONS,
    SMALL,
    STANDIN_CREDENTIALS,
    STANDIN_EXTERNAL_ID,
    Person,
    SeededAccount,
    SeedError,
    SeedResult,
    SeedSize,
)
from demo.seed.identity_center import seed_identity_center
from demo.seed.member_accounts import ensure_ingester_role, seed_member_account

logger = logging.getLogger(__name__)

_TEAMS = ("payments", "analytics", "platform", "identity", "search", "checkout", "mobile")
_OU_NAMES = ("Workloads", "Production", "Sandbox", "Staging", "Security", "Shared Services")
# OU name -> parent OU name (None: the root).
_OU_PARENTS = {"Production": "Workloads", "Staging": "Workloads"}
_OU_ENV = {
    "Workloads": "workloads",
    "Production": "prod",
    "Sandbox": "sandbox",
    "Staging": "staging",
    "Security": "security",
    "Shared Services": "shared",
}


def seed_organization(
    size: SeedSize = SMALL,
    *,
    region: str | None = None,
    people: Sequence[Person] = (),
    progress: Callable[[str], None] | None = None,
    ingester_role: str = INGESTER_ROLE,
    external_id: str | None = None,
) -> SeedResult:
    """Creates an organization of ``size`` in the stand-in AWS and returns what it made.

    ``region`` is the home region (Organizations, Identity Center, the first resource
    region). Safe to call on a freshly reset stand-in; refuses (``SeedError``) when the
    stand-in already holds an organization, rather than adding a second set of accounts.

    ``ingester_role`` is created in every account, its trust policy requiring
    ``external_id`` (by default the installation's External ID when one exists, else
    ``STANDIN_EXTERNAL_ID``).
    """
    endpoint = settings.AWS_ENDPOINT_URL
    if not endpoint:
        raise SeedError(
            "Seeding only runs against the stand-in AWS: set AWS_ENDPOINT_URL to the moto "
            "server's URL (or pass --endpoint). It never creates accounts in real AWS."
        )
    region = region or settings.AWS_DEFAULT_REGION
    regions = [region, *[r for r in REGIONS if r != region]][: size.regions]
    say = progress or (lambda message: logger.info("%s", message))
    started = time.monotonic()
    management = clients.make_session(STANDIN_CREDENTIALS, region=region)

    org = clients.client("organizations", session=management, region=region)
    say(f"Creating the organization at {endpoint}")
    organization = _create_organization(org, endpoint)
    root_id = org.list_roots()["Roots"][0]["Id"]
    ous, ou_parents = _create_ous(org, root_id, size.ous)
    accounts = _create_accounts(org, root_id, ous, size.accounts)
    say(f"Created {len(ous)} OUs and {len(accounts)} member accounts")
    external_id = external_id or installation_external_id()
    trust_policy = ingester_trust_policy(organization["MasterAccountId"], external_id)
    ensure_ingester_role(management, ingester_role, trust_policy)

    ami_ids = _find_amis(management, regions) if size.ec2_per_account else {}

    pool = ThreadPoolExecutor(max_workers=size.workers, thread_name_prefix="seed")
    try:
        account_jobs = [
            pool.submit(
                seed_member_account,
                account,
                size,
                regions,
                ami_ids,
                organization["MasterAccountId"],
                (ingester_role, trust_policy),
            )
            for account in accounts
        ]
        identity = seed_identity_center(pool, management, region, size, accounts, people, say=say)
        for done, job in enumerate(account_jobs, start=1):
            job.result()
            if done % 10 == 0 or done == len(account_jobs):
                say(f"Seeded resources in {done}/{len(account_jobs)} accounts")
    except BaseException:
        # A failure or an interrupt (Ctrl-C): drop the accounts not started yet rather
        # than seed them all before the error surfaces.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)

    return SeedResult(
        size=size,
        endpoint_url=endpoint,
        region=region,
        regions=regions,
        organization_id=organization["Id"],
        management_account_id=organization["MasterAccountId"],
        root_id=root_id,
        ous=ous,
        ou_parents=ou_parents,
        accounts=accounts,
        seconds=time.monotonic() - started,
        ingester_role=ingester_role,
        external_id=external_id,
        **identity,
    )


def installation_external_id() -> str:
    """The installation's External ID if it has one yet, without creating it (the seed
    also runs where there is no database: the stand-in's own commands, some tests)."""
    try:
        from aws_integration.models import AwsSettings

        existing = AwsSettings.objects.filter(pk=1).values_list("external_id", flat=True).first()
    except Exception:  # no database, or not migrated yet
        existing = None
    return existing or STANDIN_EXTERNAL_ID


def ingester_trust_policy(management_account_id: str, external_id: str) -> str:
    """Trusts Portcullis's principal (settings.PORTCULLIS_AWS_PRINCIPAL_ARN; in the stand-in,
    the credentials it runs with belong to the management account) on condition of the
    External ID, as the trust policy shown on the app page does."""
    principal = settings.PORTCULLIS_AWS_PRINCIPAL_ARN or (
        f"arn:aws:iam::{management_account_id}:root"
    )
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": principal},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
                }
            ],
        }
    )


def _create_organization(org: Any, endpoint: str) -> dict[str, Any]:
    try:
        existing = org.describe_organization()["Organization"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "AWSOrganizationsNotInUseException":
            raise
    else:
        raise SeedError(
            f"The stand-in AWS at {endpoint} already holds organization {existing['Id']}. "
            f"Reset it first (POST {endpoint}/moto-api/reset, or seed_aws --reset)."
        )
    return org.create_organization(FeatureSet="ALL")["Organization"]


def _create_ous(org: Any, root_id: str, count: int) -> tuple[dict[str, str], dict[str, str]]:
    names = list(_OU_NAMES[:count]) + [f"Team {n:02d}" for n in range(len(_OU_NAMES), count)]
    ous: dict[str, str] = {}
    parents: dict[str, str] = {}
    for name in names:
        parent_name = _OU_PARENTS.get(name, None if name in _OU_NAMES else "Workloads")
        parent_id = ous[parent_name] if parent_name else root_id
        ou = org.create_organizational_unit(
            ParentId=parent_id, Name=name, Tags=[{"Key": "env", "Value": _ou_env(name)}]
        )["OrganizationalUnit"]
        ous[name] = ou["Id"]
        parents[ou["Id"]] = parent_id
    return ous, parents


def _ou_env(ou_name: str) -> str:
    return _OU_ENV.get(ou_name) or ou_name.lower().replace(" ", "-")


def _create_accounts(
    org: Any, root_id: str, ous: dict[str, str], count: int
) -> list[SeededAccount]:
    # Workloads is a parent of OUs once there are others; accounts go to the rest.
    homes = [name for name in ous if name != "Workloads"] or list(ous)
    accounts: list[SeededAccount] = []
    for index in range(count):
        ou_name = homes[index % len(homes)]
        team = _TEAMS[index % len(_TEAMS)]
        if index >= len(_TEAMS):
            team = f"{team}{index // len(_TEAMS) + 1}"
        env = _ou_env(ou_name)
        name = f"{team}-{env}"
        email = f"aws+{name}@demo.portcullis.test"
        status = org.create_account(
            Email=email,
            AccountName=name,
            RoleName=MEMBER_ACCOUNT_ROLE,
            Tags=[{"Key": "team", "Value": team}, {"Key": "env", "Value": env}],
        )["CreateAccountStatus"]
        status = _wait_for_account(org, status)
        account_id = status["AccountId"]
        org.move_account(
            AccountId=account_id, SourceParentId=root_id, DestinationParentId=ous[ou_name]
        )
        accounts.append(
            SeededAccount(
                account_id=account_id,
                name=name,
                email=email,
                ou_id=ous[ou_name],
                ou_name=ou_name,
                team=team,
                env=env,
            )
        )
    return accounts


def _wait_for_account(org: Any, status: dict[str, Any]) -> dict[str, Any]:
    # moto answers SUCCEEDED at once; AWS takes a while, so poll in case.
    deadline = time.monotonic() + 120
    while status["State"] == "IN_PROGRESS" and time.monotonic() < deadline:
        time.sleep(1)
        status = org.describe_create_account_status(CreateAccountRequestId=status["Id"])[
            "CreateAccountStatus"
        ]
    if status["State"] != "SUCCEEDED":
        raise SeedError(
            f"Creating account {status.get('AccountName')} ended {status['State']}: "
            f"{status.get('FailureReason', 'no reason given')}."
        )
    return status


def _find_amis(session: Any, regions: Iterable[str]) -> dict[str, str]:
    """An Amazon Linux image id per region (moto ships the same public images everywhere).

    Narrow name filters on purpose: moto holds ~1,300 public images per region and
    answering a broad filter takes it over a second."""
    amis: dict[str, str] = {}
    for region in regions:
        ec2 = clients.client("ec2", session=session, region=region)
        images: list[Any] = []
        for pattern in ("al2023-ami-2023*-x86_64", "amzn2-ami-hvm-*-x86_64-gp2"):
            images = ec2.describe_images(
                Owners=["amazon"], Filters=[{"Name": "name", "Values": [pattern]}]
            )["Images"]
            if images:
                break
        if not images:
            raise SeedError(f"The stand-in has no Amazon Linux machine image in {region}.")
        newest = max(images, key=lambda i: (i.get("CreationDate", ""), i["Name"]))
        amis[region] = newest["ImageId"]
    return amis
