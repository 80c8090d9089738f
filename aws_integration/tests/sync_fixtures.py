"""What the sync tests share: a small seeded organization (seeded once per process and
again only when another test emptied the stand-in), an app pointing at it, and helpers
to change the stand-in AWS through boto3 the way people change AWS."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import requests
from botocore.exceptions import ClientError
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from access.models import AccessLevel, Grant, Resource
from aws_integration import clients
from aws_integration.models import AwsApp, IdentityCenterUser, SyncRun
from aws_integration.sync import engine, services
from demo import seed

REGION = "us-east-1"
ADA_EMAIL = "Ada.Lovelace@Example.com"  # in the identity store; the portal has it lower-cased
PEOPLE = [seed.Person(ADA_EMAIL, "Ada", "Lovelace", groups=("Engineering",))]
# Two member accounts (one in Workloads > Production, one in Sandbox) with one of each
# resource type, two permission sets, two groups.
SIZE = seed.SeedSize(
    name="sync-tests",
    accounts=2,
    ous=3,
    regions=1,
    iam_roles_per_account=2,
    ec2_per_account=1,
    eks_per_account=1,
    rds_mysql_per_account=1,
    rds_postgres_per_account=1,
    aurora_mysql_per_account=1,
    aurora_postgres_per_account=1,
    permission_sets=2,
    idc_groups=2,
    idc_users=2,
    memberships_per_user=1,
    assignments_per_account=1,
    workers=4,
)
INVENTORY_TABLES = tuple(
    model._meta.db_table for model in (Resource, AccessLevel, Grant, IdentityCenterUser)
)

_cache: dict[str, seed.SeedResult] = {}


def seeded_org() -> seed.SeedResult:
    """The organization, seeded through whatever settings.AWS_ENDPOINT_URL is (the stand-in
    or the fault proxy in front of it); reseeded when the stand-in was reset meanwhile."""
    result = _cache.get("org")
    if result is None or not _still_seeded(result):
        # Through the fault proxy too: it forwards what carries no AWS signature.
        endpoint = settings.AWS_ENDPOINT_URL
        requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        result = _cache["org"] = seed.seed_organization(SIZE, region=REGION, people=PEOPLE)
    return result


def forget_org() -> None:
    """For tests that change the seeded objects themselves: the next test reseeds."""
    _cache.pop("org", None)


def _still_seeded(result: seed.SeedResult) -> bool:
    try:
        org = management("organizations").describe_organization()["Organization"]
    except ClientError:
        return False
    return org["Id"] == result.organization_id


def make_app(org: seed.SeedResult, **overrides: Any) -> AwsApp:
    fields = {
        "name": "Sync test organization",
        "management_account_id": org.management_account_id,
        "organization_management": True,
        "identity_center_management": True,
        "identity_center_region": org.region,
        "identity_center_instance_arn": org.instance_arn,
        "identity_store_id": org.identity_store_id,
        "access_portal_url": f"https://{org.identity_store_id}.awsapps.com/start",
        "regions": [REGION],
    }
    fields.update(overrides)
    return AwsApp.objects.create(**fields)


def sync(app: AwsApp, *, account_id: str = "") -> SyncRun:
    run = services.request_sync(app, account_id=account_id, enqueue=False)
    return engine.run_sync(run.pk)


def inventory_writes(queries: CaptureQueriesContext) -> list[str]:
    """The captured statements that insert, update or delete inventory rows."""
    writes = []
    for query in queries.captured_queries:
        sql = query["sql"].lstrip().upper()
        if sql.startswith(("INSERT", "UPDATE", "DELETE")) and any(
            f'"{table.upper()}"' in sql or f" {table.upper()} " in sql for table in INVENTORY_TABLES
        ):
            writes.append(query["sql"])
    return writes


def capture() -> CaptureQueriesContext:
    return CaptureQueriesContext(connection)


# Changing the stand-in -------------------------------------------------------------------------
def management(service: str) -> Any:
    session = clients.make_session(seed.STANDIN_CREDENTIALS, region=REGION)
    return clients.client(service, session=session, region=REGION)


def member(account_id: str, service: str, region: str = REGION) -> Any:
    session = clients.session_for_account(account_id, seed.MEMBER_ACCOUNT_ROLE, region=region)
    return clients.client(service, session=session, region=region)


def run_instance(account_id: str, name: str) -> str:
    ec2 = member(account_id, "ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return ec2.run_instances(
        ImageId=image,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
    )["Instances"][0]["InstanceId"]


def create_role(account_id: str, name: str, tags: dict[str, str] | None = None) -> str:
    return member(account_id, "iam").create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
        Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    )["Role"]["Arn"]


def live(app: AwsApp, type_: str, **filters: Any) -> list[Resource]:
    return list(Resource.objects.filter(app=app, type=type_, deleted_at__isnull=True, **filters))


def level_ids(resource: Resource) -> set[str]:
    return set(
        resource.access_levels.filter(deleted_at__isnull=True).values_list("remote_id", flat=True)
    )


def names(rows: Iterable[Resource]) -> set[str]:
    return {row.name for row in rows}
