"""Seeds the stand-in AWS (a moto server) with an organization to govern.

One generator, sized by :class:`SeedSize`, serves the demo (``SMALL``), the tests and the
sync benchmark (``LARGE``). Everything goes through boto3 against
``settings.AWS_ENDPOINT_URL`` via :mod:`aws_integration.clients`, exactly as Portcullis
later reads it back. Refuses to run against real AWS (no endpoint override set).

What it builds, deterministically (same names for the same size):

- An organization (feature set ALL) whose management account is the caller's account.
- An OU tree: ``Workloads`` with ``Production`` and ``Staging`` under it, ``Sandbox``,
  ``Security``, ``Shared Services`` at the root, then ``Team NN`` OUs under ``Workloads``.
  Member accounts are spread round-robin over every OU but ``Workloads`` (which only holds
  OUs once there is more than one).
- In each member account, through ``OrganizationAccountAccessRole`` (moto keys resources by
  the assumed role's account, as AWS does): IAM roles with tags and trust policies (the
  first one tagged ``portcullis:requestable``; one is the EKS cluster role), and per
  region EC2 instances (``Name`` tag), EKS clusters, RDS MySQL / PostgreSQL instances and
  Aurora MySQL / PostgreSQL clusters (IAM database authentication on, tagged
  ``portcullis:db-users``).
- In Identity Center (the management account's instance): users, groups, memberships,
  permission sets, group (and one user) account assignments, and the assigned permission
  sets provisioned.

moto gaps worked around here (moto 5.2):

- ``sso-admin``: there is one instance per account and region, created by moto itself
  (``list_instances`` returns it; there is no ``create_instance``).
- ``sso-admin provision_permission_set`` ignores the target and appends the permission set
  to the instance's provisioned list on every call, so calling it once per account would
  list it several times. Each assigned permission set is therefore provisioned once, with
  ``TargetType=ALL_PROVISIONED_ACCOUNTS`` (also valid on AWS, where
  ``create_account_assignment`` provisions to the account by itself).
  ``list_permission_sets_provisioned_to_account`` then answers with every provisioned
  permission set whatever the ``AccountId``.
- ``sso-admin attach_managed_policy_to_permission_set`` only finds AWS managed policies
  under the path ``/``: moto reads ``path`` where its data says ``Path``, so the
  ``/job-function/`` policies (ViewOnlyAccess, DatabaseAdministrator, ...) cannot be
  attached by their real ARN. Permission sets use root-path policies or an inline policy.
- ``sso-admin create_account_assignment`` and ``identitystore create_group_membership`` do
  not refuse duplicates; this module creates each one once.
- ``organizations create_account`` succeeds at once (no IN_PROGRESS status to poll), and
  any role ARN can be assumed: moto does not create ``OrganizationAccountAccessRole``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings

from access.choices import ResourceType
from aws_integration import clients

logger = logging.getLogger(__name__)

# Tags and names Portcullis reads back (sync, grant drivers).
REQUESTABLE_TAG = "portcullis:requestable"
DB_USERS_TAG = "portcullis:db-users"
DB_USERS = "app_ro,app_rw"
MEMBER_ACCOUNT_ROLE = "OrganizationAccountAccessRole"
EKS_CLUSTER_ROLE = "EksClusterRole"
# Credentials the stand-in accepts; moto maps unknown keys to its default account,
# which becomes the management account.
STANDIN_CREDENTIALS = {
    "AccessKeyId": "testing",
    "SecretAccessKey": "testing",
    "SessionToken": "testing",
}
# A throwaway master password for the stand-in databases (moto never checks it).
_DB_MASTER_PASSWORD = "stand-in-only-password"

_REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "eu-central-1", "ap-southeast-2")
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
_ROLE_NAMES = (
    "DeveloperAccess",
    EKS_CLUSTER_ROLE,
    "ReadOnlyAudit",
    "DataEngineer",
    "Deployer",
    "SupportEngineer",
    "BreakGlass",
    "CostExplorer",
)
_INSTANCE_ROLES = ("web", "worker", "batch", "bastion")
_GROUP_NAMES = ("Engineering", "Data", "Security", "Support", "Finance", "Platform", "SRE")
_GIVEN_NAMES = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery")
_FAMILY_NAMES = ("Smith", "Garcia", "Chen", "Okafor", "Novak", "Silva", "Kowalski", "Haddad")
# (name, AWS managed policy name under path "/" or None for an inline policy, session length)
_PERMISSION_SETS = (
    ("AdministratorAccess", "AdministratorAccess", "PT1H"),
    ("ReadOnlyAccess", "ReadOnlyAccess", "PT8H"),
    ("PowerUserAccess", "PowerUserAccess", "PT4H"),
    ("SecurityAudit", "SecurityAudit", "PT8H"),
    ("DatabaseAdministrator", None, "PT2H"),
    ("SupportAccess", "AWSSupportAccess", "PT8H"),
    ("BillingReadOnly", "AWSBillingReadOnlyAccess", "PT8H"),
    ("EC2ReadOnly", "AmazonEC2ReadOnlyAccess", "PT8H"),
)


class SeedError(Exception):
    """The stand-in cannot be seeded as asked (wrong target, already seeded, bad size)."""


@dataclass(frozen=True)
class SeedSize:
    """How much to create. Resource counts are per member account and per region, except
    IAM roles (global, per account). ``iam_roles_per_account`` includes the role tagged
    ``portcullis:requestable`` and, when there are EKS clusters, the EKS cluster role."""

    name: str
    accounts: int
    ous: int
    regions: int
    iam_roles_per_account: int
    ec2_per_account: int
    eks_per_account: int
    rds_mysql_per_account: int
    rds_postgres_per_account: int
    aurora_mysql_per_account: int
    aurora_postgres_per_account: int
    permission_sets: int
    idc_groups: int
    idc_users: int
    memberships_per_user: int
    assignments_per_account: int
    workers: int = 8

    def __post_init__(self) -> None:
        if self.accounts < 1 or self.ous < 1 or self.regions < 1:
            raise SeedError("A seed needs at least one account, one OU and one region.")
        if self.regions > len(_REGIONS):
            raise SeedError(f"At most {len(_REGIONS)} regions can be seeded: {_REGIONS}.")
        needed_roles = 1 + (1 if self.eks_per_account else 0)
        if self.iam_roles_per_account < needed_roles:
            raise SeedError(
                f"iam_roles_per_account must be at least {needed_roles}: the requestable role"
                + (" and the EKS cluster role." if self.eks_per_account else ".")
            )
        if self.memberships_per_user > self.idc_groups:
            raise SeedError("memberships_per_user cannot exceed idc_groups.")
        if self.assignments_per_account and not (self.idc_groups and self.permission_sets):
            raise SeedError("Account assignments need at least one group and permission set.")

    @property
    def resources_per_account(self) -> int:
        regional = (
            self.ec2_per_account
            + self.eks_per_account
            + self.rds_mysql_per_account
            + self.rds_postgres_per_account
            + self.aurora_mysql_per_account
            + self.aurora_postgres_per_account
        )
        return self.iam_roles_per_account + regional * self.regions


SMALL = SeedSize(
    name="small",
    accounts=4,
    ous=3,
    regions=2,
    iam_roles_per_account=3,
    ec2_per_account=2,
    eks_per_account=1,
    rds_mysql_per_account=1,
    rds_postgres_per_account=1,
    aurora_mysql_per_account=1,
    aurora_postgres_per_account=1,
    permission_sets=4,
    idc_groups=4,
    idc_users=8,
    memberships_per_user=2,
    assignments_per_account=2,
)
LARGE = SeedSize(
    name="large",
    accounts=50,
    ous=6,
    regions=1,
    iam_roles_per_account=20,
    ec2_per_account=40,
    eks_per_account=2,
    rds_mysql_per_account=2,
    rds_postgres_per_account=2,
    aurora_mysql_per_account=1,
    aurora_postgres_per_account=1,
    permission_sets=30,
    idc_groups=100,
    idc_users=500,
    memberships_per_user=2,
    assignments_per_account=3,
)
SIZES = {size.name: size for size in (SMALL, LARGE)}


@dataclass(frozen=True)
class Person:
    """Someone to create in the identity store before the generated users (the demo's
    people), optionally in some of the seeded groups (by name)."""

    email: str
    given_name: str
    family_name: str
    groups: tuple[str, ...] = ()


@dataclass
class SeededResource:
    """One resource created in a member account."""

    type: str  # an access.choices.ResourceType value
    account_id: str
    region: str  # empty for IAM (global)
    id: str  # role name, instance id, cluster name, DB identifier
    arn: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class SeededAccount:
    """A member account, its OU and what was created in it."""

    account_id: str
    name: str
    email: str
    ou_id: str
    ou_name: str
    team: str
    env: str
    resources: list[SeededResource] = field(default_factory=list)

    def of_type(self, resource_type: str) -> list[SeededResource]:
        return [r for r in self.resources if r.type == resource_type]


@dataclass(frozen=True)
class SeededAssignment:
    """An Identity Center account assignment."""

    account_id: str
    permission_set_arn: str
    principal_type: str  # GROUP or USER
    principal_id: str


@dataclass
class SeedResult:
    """The ids and ARNs of everything the seed created."""

    size: SeedSize
    endpoint_url: str
    region: str
    regions: list[str]
    organization_id: str
    management_account_id: str
    root_id: str
    ous: dict[str, str]  # OU name -> id
    ou_parents: dict[str, str]  # OU id -> parent id (root or OU)
    accounts: list[SeededAccount]
    instance_arn: str
    identity_store_id: str
    permission_sets: dict[str, str]  # name -> ARN
    groups: dict[str, str]  # display name -> group id
    users: dict[str, str]  # user name (email) -> user id
    memberships: list[tuple[str, str]]  # (group id, user id)
    assignments: list[SeededAssignment]
    provisioned_permission_sets: list[str]
    seconds: float = 0.0

    def account(self, name: str) -> SeededAccount:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(f"No seeded account is named {name!r}.")

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {
            "accounts": len(self.accounts),
            "organizational units": len(self.ous),
        }
        for resource_type in ResourceType:
            n = sum(len(a.of_type(resource_type.value)) for a in self.accounts)
            if n:
                counts[resource_type.label] = n
        counts.update(
            {
                "permission sets": len(self.permission_sets),
                "Identity Center groups": len(self.groups),
                "Identity Center users": len(self.users),
                "group memberships": len(self.memberships),
                "account assignments": len(self.assignments),
            }
        )
        return counts


# Seeding -------------------------------------------------------------------------------


def seed_organization(
    size: SeedSize = SMALL,
    *,
    region: str | None = None,
    people: Sequence[Person] = (),
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Creates an organization of ``size`` in the stand-in AWS and returns what it made.

    ``region`` is the home region (Organizations, Identity Center, the first resource
    region). Safe to call on a freshly reset stand-in; refuses (``SeedError``) when the
    stand-in already holds an organization, rather than adding a second set of accounts.
    """
    endpoint = settings.AWS_ENDPOINT_URL
    if not endpoint:
        raise SeedError(
            "Seeding only runs against the stand-in AWS: set AWS_ENDPOINT_URL to the moto "
            "server's URL (or pass --endpoint). It never creates accounts in real AWS."
        )
    region = region or settings.AWS_DEFAULT_REGION
    regions = [region, *[r for r in _REGIONS if r != region]][: size.regions]
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

    ami_ids = _find_amis(management, regions) if size.ec2_per_account else {}

    pool = ThreadPoolExecutor(max_workers=size.workers, thread_name_prefix="seed")
    try:
        account_jobs = [
            pool.submit(
                _seed_account, account, size, regions, ami_ids, organization["MasterAccountId"]
            )
            for account in accounts
        ]
        identity = _seed_identity_center(pool, management, region, size, accounts, people, say=say)
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
        **identity,
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
        images: list[dict[str, Any]] = []
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


# Member accounts ----------------------------------------------------------------------


def _tags(account: SeededAccount, **extra: str) -> dict[str, str]:
    return {"team": account.team, "env": account.env, **extra}


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _trust_policy(principal: dict[str, str]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


def _seed_account(
    account: SeededAccount,
    size: SeedSize,
    regions: list[str],
    ami_ids: dict[str, str],
    management_account_id: str,
) -> None:
    credentials = clients.assume_role(
        f"arn:aws:iam::{account.account_id}:role/{MEMBER_ACCOUNT_ROLE}",
        session_name="portcullis-seed",
        session=clients.make_session(STANDIN_CREDENTIALS, region=regions[0]),
    )
    session = clients.make_session(credentials, region=regions[0])
    eks_role_arn = _create_roles(account, session, size, management_account_id)
    for region in regions:
        _create_instances(account, session, region, size.ec2_per_account, ami_ids.get(region))
        _create_clusters(account, session, region, size.eks_per_account, eks_role_arn)
        _create_databases(account, session, region, size)


def _create_roles(
    account: SeededAccount, session: Any, size: SeedSize, management_account_id: str
) -> str:
    """Creates the account's IAM roles; returns the EKS cluster role's ARN (or "")."""
    iam = clients.client("iam", session=session)
    management_root = {"AWS": f"arn:aws:iam::{management_account_id}:root"}
    names = [n for n in _ROLE_NAMES if size.eks_per_account or n != EKS_CLUSTER_ROLE]
    names = names[: size.iam_roles_per_account]
    names += [f"ServiceRole{n:02d}" for n in range(len(names), size.iam_roles_per_account)]
    service_principals = ("ec2.amazonaws.com", "lambda.amazonaws.com", "ecs-tasks.amazonaws.com")
    eks_role_arn = ""
    for index, name in enumerate(names):
        tags = _tags(account)
        if index == 0:
            principal = management_root
            tags[REQUESTABLE_TAG] = "true"
        elif name == EKS_CLUSTER_ROLE:
            principal = {"Service": "eks.amazonaws.com"}
        elif name in _ROLE_NAMES:
            principal = management_root
        else:
            principal = {"Service": service_principals[index % len(service_principals)]}
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=_trust_policy(principal),
            Description=f"{name} for {account.team} ({account.env})",
            MaxSessionDuration=3600 * (4 if index == 0 else 1),
            Tags=_tag_list(tags),
        )["Role"]
        if name == EKS_CLUSTER_ROLE:
            eks_role_arn = role["Arn"]
        account.resources.append(
            SeededResource(
                type=ResourceType.IAM_ROLE.value,
                account_id=account.account_id,
                region="",
                id=name,
                arn=role["Arn"],
                name=name,
                tags=tags,
            )
        )
    return eks_role_arn


def _create_instances(
    account: SeededAccount, session: Any, region: str, count: int, ami_id: str | None
) -> None:
    if not count:
        return
    ec2 = clients.client("ec2", session=session, region=region)
    for n in range(count):
        name = f"{account.name}-{_INSTANCE_ROLES[n % len(_INSTANCE_ROLES)]}-{n + 1:02d}"
        tags = _tags(account, Name=name)
        instance = ec2.run_instances(
            ImageId=ami_id,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": _tag_list(tags)}],
        )["Instances"][0]
        instance_id = instance["InstanceId"]
        account.resources.append(
            SeededResource(
                type=ResourceType.EC2_INSTANCE.value,
                account_id=account.account_id,
                region=region,
                id=instance_id,
                arn=f"arn:aws:ec2:{region}:{account.account_id}:instance/{instance_id}",
                name=name,
                tags=tags,
            )
        )


def _create_clusters(
    account: SeededAccount, session: Any, region: str, count: int, role_arn: str
) -> None:
    if not count:
        return
    ec2 = clients.client("ec2", session=session, region=region)
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
            "Subnets"
        ]
    ][:2]
    eks = clients.client("eks", session=session, region=region)
    for n in range(count):
        name = f"{account.name}-{region}-{n + 1}"
        tags = _tags(account)
        cluster = eks.create_cluster(
            name=name,
            version="1.31",
            roleArn=role_arn,
            resourcesVpcConfig={"subnetIds": subnets, "endpointPublicAccess": True},
            tags=tags,
        )["cluster"]
        account.resources.append(
            SeededResource(
                type=ResourceType.EKS_CLUSTER.value,
                account_id=account.account_id,
                region=region,
                id=name,
                arn=cluster["arn"],
                name=name,
                tags=tags,
            )
        )


_DB_ENGINES = (
    # (resource type, engine, size attribute, master user, is a cluster)
    (ResourceType.RDS_MYSQL, "mysql", "rds_mysql_per_account", "admin", False),
    (ResourceType.RDS_POSTGRES, "postgres", "rds_postgres_per_account", "postgres", False),
    (ResourceType.AURORA_MYSQL, "aurora-mysql", "aurora_mysql_per_account", "admin", True),
    (
        ResourceType.AURORA_POSTGRES,
        "aurora-postgresql",
        "aurora_postgres_per_account",
        "postgres",
        True,
    ),
)


def _create_databases(account: SeededAccount, session: Any, region: str, size: SeedSize) -> None:
    if not any(getattr(size, attr) for _, _, attr, _, _ in _DB_ENGINES):
        return
    rds = clients.client("rds", session=session, region=region)
    for resource_type, engine, attr, master, is_cluster in _DB_ENGINES:
        for n in range(getattr(size, attr)):
            identifier = f"{account.name}-{engine}-{n + 1}"
            tags = _tags(account, **{DB_USERS_TAG: DB_USERS})
            common = {
                "Engine": engine,
                "MasterUsername": master,
                "MasterUserPassword": _DB_MASTER_PASSWORD,
                "EnableIAMDatabaseAuthentication": True,
                "Tags": _tag_list(tags),
            }
            if is_cluster:
                db = rds.create_db_cluster(DBClusterIdentifier=identifier, **common)["DBCluster"]
                arn = db["DBClusterArn"]
            else:
                db = rds.create_db_instance(
                    DBInstanceIdentifier=identifier,
                    DBInstanceClass="db.t3.micro",
                    AllocatedStorage=20,
                    **common,
                )["DBInstance"]
                arn = db["DBInstanceArn"]
            account.resources.append(
                SeededResource(
                    type=resource_type.value,
                    account_id=account.account_id,
                    region=region,
                    id=identifier,
                    arn=arn,
                    name=identifier,
                    tags=tags,
                )
            )


# Identity Center ----------------------------------------------------------------------


def _seed_identity_center(
    pool: ThreadPoolExecutor,
    session: Any,
    region: str,
    size: SeedSize,
    accounts: list[SeededAccount],
    people: Sequence[Person],
    *,
    say: Callable[[str], None],
) -> dict[str, Any]:
    sso = clients.client("sso-admin", session=session, region=region)
    instances = sso.list_instances()["Instances"]
    if not instances:
        raise SeedError(f"The stand-in has no Identity Center instance in {region}.")
    instance_arn = instances[0]["InstanceArn"]
    store_id = instances[0]["IdentityStoreId"]
    store = clients.client("identitystore", session=session, region=region)

    group_names = list(_GROUP_NAMES[: size.idc_groups]) + [
        f"Team {n:03d}" for n in range(len(_GROUP_NAMES), size.idc_groups)
    ]
    for person in people:
        unknown = set(person.groups) - set(group_names)
        if unknown:
            raise SeedError(
                f"{person.email} is to join {sorted(unknown)}, which this seed size does not "
                f"create (groups: {group_names})."
            )
    groups: dict[str, str] = {}
    for name in group_names:
        groups[name] = store.create_group(
            IdentityStoreId=store_id, DisplayName=name, Description=f"The {name} team"
        )["GroupId"]

    # Users in parallel chunks: 500 users one by one are the slowest part of LARGE.
    wanted = [(p.email, p.given_name, p.family_name) for p in people] + _generated_users(
        size.idc_users, taken={p.email for p in people}
    )
    chunks = [wanted[i : i + 50] for i in range(0, len(wanted), 50)]
    users: dict[str, str] = {}
    for chunk_users in pool.map(
        lambda chunk: _create_users(session, region, store_id, chunk), chunks
    ):
        users.update(chunk_users)

    memberships: list[tuple[str, str]] = []
    for person in people:
        memberships += [(groups[g], users[person.email]) for g in person.groups]
    generated = [email for email, _, _ in wanted[len(people) :]]
    for index, email in enumerate(generated):
        for k in range(size.memberships_per_user):
            group_name = group_names[(index * size.memberships_per_user + k) % len(group_names)]
            memberships.append((groups[group_name], users[email]))
    membership_chunks = [memberships[i : i + 200] for i in range(0, len(memberships), 200)]
    list(
        pool.map(
            lambda chunk: _create_memberships(session, region, store_id, chunk),
            membership_chunks,
        )
    )
    say(f"Created {len(users)} Identity Center users, {len(groups)} groups")

    permission_sets = _create_permission_sets(sso, instance_arn, size.permission_sets)
    assignments: list[SeededAssignment] = []
    ps_arns = list(permission_sets.values())
    group_ids = list(groups.values())
    for index, account in enumerate(accounts):
        for k in range(size.assignments_per_account):
            assignments.append(
                SeededAssignment(
                    account_id=account.account_id,
                    permission_set_arn=ps_arns[(index + k) % len(ps_arns)],
                    principal_type="GROUP",
                    principal_id=group_ids[(index + k) % len(group_ids)],
                )
            )
    if accounts and users and ps_arns and size.assignments_per_account:
        # One direct user assignment: long-lived access that reviews should find.
        first_generated = users[generated[0]] if generated else next(iter(users.values()))
        assignments.append(
            SeededAssignment(
                account_id=accounts[0].account_id,
                permission_set_arn=permission_sets.get("ReadOnlyAccess", ps_arns[0]),
                principal_type="USER",
                principal_id=first_generated,
            )
        )
    for assignment in assignments:
        status = sso.create_account_assignment(
            InstanceArn=instance_arn,
            TargetId=assignment.account_id,
            TargetType="AWS_ACCOUNT",
            PermissionSetArn=assignment.permission_set_arn,
            PrincipalType=assignment.principal_type,
            PrincipalId=assignment.principal_id,
        )["AccountAssignmentCreationStatus"]
        if status["Status"] == "FAILED":
            raise SeedError(f"Account assignment failed: {status.get('FailureReason')}")
    provisioned = sorted({a.permission_set_arn for a in assignments})
    for arn in provisioned:
        sso.provision_permission_set(
            InstanceArn=instance_arn, PermissionSetArn=arn, TargetType="ALL_PROVISIONED_ACCOUNTS"
        )
    say(f"Created {len(permission_sets)} permission sets and {len(assignments)} assignments")
    return {
        "instance_arn": instance_arn,
        "identity_store_id": store_id,
        "permission_sets": permission_sets,
        "groups": groups,
        "users": users,
        "memberships": memberships,
        "assignments": assignments,
        "provisioned_permission_sets": provisioned,
    }


def _generated_users(count: int, *, taken: set[str]) -> list[tuple[str, str, str]]:
    users: list[tuple[str, str, str]] = []
    n = 0
    while len(users) < count:
        given = _GIVEN_NAMES[n % len(_GIVEN_NAMES)]
        family = _FAMILY_NAMES[(n // len(_GIVEN_NAMES)) % len(_FAMILY_NAMES)]
        round_ = n // (len(_GIVEN_NAMES) * len(_FAMILY_NAMES))
        suffix = str(round_ + 1) if round_ else ""
        email = f"{given.lower()}.{family.lower()}{suffix}@corp.example"
        if email not in taken:
            users.append((email, given, family))
        n += 1
    return users


def _create_users(
    session: Any, region: str, store_id: str, chunk: list[tuple[str, str, str]]
) -> dict[str, str]:
    store = clients.client("identitystore", session=session, region=region)
    created: dict[str, str] = {}
    for email, given, family in chunk:
        created[email] = store.create_user(
            IdentityStoreId=store_id,
            UserName=email,
            DisplayName=f"{given} {family}",
            Name={"GivenName": given, "FamilyName": family},
            Emails=[{"Value": email, "Type": "work", "Primary": True}],
        )["UserId"]
    return created


def _create_memberships(
    session: Any, region: str, store_id: str, chunk: list[tuple[str, str]]
) -> None:
    store = clients.client("identitystore", session=session, region=region)
    for group_id, user_id in chunk:
        store.create_group_membership(
            IdentityStoreId=store_id, GroupId=group_id, MemberId={"UserId": user_id}
        )


def _create_permission_sets(sso: Any, instance_arn: str, count: int) -> dict[str, str]:
    specs = list(_PERMISSION_SETS[:count]) + [
        (f"Team{n:02d}Access", None, "PT4H") for n in range(len(_PERMISSION_SETS), count)
    ]
    created: dict[str, str] = {}
    for name, managed_policy, duration in specs:
        arn = sso.create_permission_set(
            InstanceArn=instance_arn,
            Name=name,
            Description=f"{name} (seeded)",
            SessionDuration=duration,
            Tags=[{"Key": "seeded-by", "Value": "portcullis"}],
        )["PermissionSet"]["PermissionSetArn"]
        if managed_policy:
            sso.attach_managed_policy_to_permission_set(
                InstanceArn=instance_arn,
                PermissionSetArn=arn,
                ManagedPolicyArn=f"arn:aws:iam::aws:policy/{managed_policy}",
            )
        else:
            sso.put_inline_policy_to_permission_set(
                InstanceArn=instance_arn,
                PermissionSetArn=arn,
                InlinePolicy=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["rds:Describe*", "rds-db:connect"],
                                "Resource": "*",
                            }
                        ],
                    }
                ),
            )
        created[name] = arn
    return created
