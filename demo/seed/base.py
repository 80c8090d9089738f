"""The seed's vocabulary: sizes, what to create for whom, and what was created."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from access.choices import ResourceType
from aws_integration import setup_policies

# Tags and names Portcullis reads back (sync, grant drivers).
DB_USERS_TAG = "portcullis:db-users"
DB_USERS = "app_ro,app_rw"
MEMBER_ACCOUNT_ROLE = "OrganizationAccountAccessRole"
# The role Portcullis assumes (AwsApp.ingester_role_name's default), created in the
# management account and in every member account.
INGESTER_ROLE = "PortcullisIngester"
# The External ID its trust policy requires when the installation has none yet.
STANDIN_EXTERNAL_ID = "portcullis-stand-in-external-id"
EKS_CLUSTER_ROLE = "EksClusterRole"
# Credentials the stand-in accepts; moto maps unknown keys to its default account,
# which becomes the management account.
STANDIN_CREDENTIALS = {
    "AccessKeyId": "testing",
    "SecretAccessKey": "testing",
    "SessionToken": "testing",
}

REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "eu-central-1", "ap-southeast-2")


def requestable_tag() -> str:
    """The tag key (value "true") the seed puts on the roles and permission sets it offers:
    the installation's PORTCULLIS_REQUESTABLE_TAG, so that the stand-in AWS agrees with what
    sync, the grant drivers and the ingester's policy look for."""
    return setup_policies.requestable_tag()


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

    @classmethod
    def minimal(cls, name: str, **counts: int) -> SeedSize:
        """One member account with one IAM role, one permission set, one group and one
        user, and none of the rest; ``counts`` overrides any field. For tests."""
        values: dict[str, int] = {
            "accounts": 1,
            "ous": 1,
            "regions": 1,
            "iam_roles_per_account": 1,
            "ec2_per_account": 0,
            "eks_per_account": 0,
            "rds_mysql_per_account": 0,
            "rds_postgres_per_account": 0,
            "aurora_mysql_per_account": 0,
            "aurora_postgres_per_account": 0,
            "permission_sets": 1,
            "idc_groups": 1,
            "idc_users": 1,
            "memberships_per_user": 1,
            "assignments_per_account": 0,
            "workers": 2,
        }
        return cls(name=name, **{**values, **counts})

    def __post_init__(self) -> None:
        if self.accounts < 1 or self.ous < 1 or self.regions < 1:
            raise SeedError("A seed needs at least one account, one OU and one region.")
        if self.regions > len(REGIONS):
            raise SeedError(f"At most {len(REGIONS)} regions can be seeded: {REGIONS}.")
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
    principal_type: Literal["GROUP", "USER"]
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
    ingester_role: str = INGESTER_ROLE
    external_id: str = STANDIN_EXTERNAL_ID

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
