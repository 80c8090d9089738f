"""What each member account holds: IAM roles, EC2 instances, EKS clusters, RDS and Aurora."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from access.choices import ResourceType
from aws_integration import clients
from demo.seed.base import (
    DB_USERS,
    DB_USERS_TAG,
    EKS_CLUSTER_ROLE,
    MEMBER_ACCOUNT_ROLE,
    STANDIN_CREDENTIALS,
    SeededAccount,
    SeededResource,
    SeedSize,
    requestable_tag,
)

# A throwaway master password for the stand-in databases (moto never checks it).
_DB_MASTER_PASSWORD = "stand-in-only-password"
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


def _tags(account: SeededAccount, **extra: str) -> dict[str, str]:
    return {"team": account.team, "env": account.env, **extra}


# Any: IAM, EC2 and RDS each type their {"Key", "Value"} pairs as a TypedDict of their own.
def _tag_list(tags: dict[str, str]) -> list[Any]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _trust_policy(principal: dict[str, str]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


def seed_member_account(
    account: SeededAccount,
    size: SeedSize,
    regions: list[str],
    ami_ids: dict[str, str],
    management_account_id: str,
    ingester: tuple[str, str] | None = None,
) -> None:
    """Creates the account's resources as the account itself (through the role every
    member account grants the management account) and lists them on ``account``.
    ``ingester`` is (role name, trust policy) of the ingester role to create."""
    credentials = clients.assume_role(
        f"arn:aws:iam::{account.account_id}:role/{MEMBER_ACCOUNT_ROLE}",
        session_name="portcullis-seed",
        session=clients.make_session(STANDIN_CREDENTIALS, region=regions[0]),
    )
    session = clients.make_session(credentials, region=regions[0])
    if ingester is not None:
        ensure_ingester_role(session, *ingester)
    eks_role_arn = _create_roles(account, session, size, management_account_id)
    for region in regions:
        _create_instances(account, session, region, size.ec2_per_account, ami_ids.get(region))
        _create_clusters(account, session, region, size.eks_per_account, eks_role_arn)
        _create_databases(account, session, region, size)


def ensure_ingester_role(session: Any, role_name: str, trust_policy: str) -> None:
    """Creates the ingester role in the session's account, or sets its trust policy when
    it exists. It is not a seeded resource: sync sees it as one more IAM role."""
    iam = clients.client("iam", session=session)
    try:
        iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=trust_policy,
            Description="Lets Portcullis read this account and grant access in it.",
            MaxSessionDuration=3600,
            Tags=[{"Key": "managed-by", "Value": "portcullis"}],
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            raise
        iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=trust_policy)


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
            tags[requestable_tag()] = "true"
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
    assert ami_id is not None  # every region seeded with instances has an image
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
            common: dict[str, Any] = {
                "Engine": engine,
                "MasterUsername": master,
                "MasterUserPassword": _DB_MASTER_PASSWORD,
                "EnableIAMDatabaseAuthentication": True,
                "Tags": _tag_list(tags),
            }
            db: Any  # a cluster's or an instance's description
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
