"""What each member account holds: IAM roles (global) and, per region, EC2 instances,
EKS clusters, RDS MySQL / PostgreSQL instances and Aurora clusters."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from access.choices import ResourceType
from aws_integration.clients import error_code
from aws_integration.setup_policies import MANAGED_PATH, role_not_requestable_reason
from aws_integration.sync.fetch_results import (
    LevelRecord,
    ResourceRecord,
    Scope,
    ScopeResult,
    Sweep,
)
from aws_integration.sync.fetchers.base import (
    NOT_REQUESTABLE,
    identifier_from_arn,
    paginate,
    tag_dict,
)

ACCOUNT = ResourceType.ACCOUNT.value
IAM_ROLE = ResourceType.IAM_ROLE.value
EC2_INSTANCE = ResourceType.EC2_INSTANCE.value
EKS_CLUSTER = ResourceType.EKS_CLUSTER.value
RDS_INSTANCE_TYPES = {
    "mysql": ResourceType.RDS_MYSQL.value,
    "postgres": ResourceType.RDS_POSTGRES.value,
}
RDS_CLUSTER_TYPES = {
    "aurora-mysql": ResourceType.AURORA_MYSQL.value,
    "aurora": ResourceType.AURORA_MYSQL.value,  # Aurora MySQL 5.6's engine name
    "aurora-postgresql": ResourceType.AURORA_POSTGRES.value,
}
DB_USERS_TAG = "portcullis:db-users"

ASSUME_LEVEL = LevelRecord("assume", "Assume role", "Assume this IAM role.")
SSM_LEVEL = LevelRecord(
    "ssm-session", "SSM session", "A Session Manager shell on this instance, nothing else."
)
EKS_POLICY_PREFIX = "arn:aws:eks::aws:cluster-access-policy/"
EKS_LEVELS = [
    LevelRecord(EKS_POLICY_PREFIX + "AmazonEKSViewPolicy", "view", "Read most objects."),
    LevelRecord(EKS_POLICY_PREFIX + "AmazonEKSEditPolicy", "edit", "Change most objects."),
    LevelRecord(EKS_POLICY_PREFIX + "AmazonEKSAdminPolicy", "admin", "Admin within namespaces."),
    LevelRecord(
        EKS_POLICY_PREFIX + "AmazonEKSClusterAdminPolicy", "cluster-admin", "Full control."
    ),
]
# States in which AWS still describes something that is going away.
GONE_EC2_STATES = {"terminated", "shutting-down"}
GONE_STATUSES = {"deleting", "DELETING"}


def _parent(account_id: str) -> tuple[str, str]:
    return (ACCOUNT, account_id)


def _ids_predicate(names: frozenset[str]) -> Any:
    lowered = {identifier_from_arn(n).lower() for n in names}
    return lambda row: identifier_from_arn(row.remote_id).lower() in lowered


# Regions --------------------------------------------------------------------------------------
def fetch_regions(ec2: Any) -> list[str]:
    """The regions enabled in the account (opt-in regions only once opted in)."""
    regions = ec2.describe_regions()["Regions"]
    return sorted(r["RegionName"] for r in regions if r.get("OptInStatus") != "not-opted-in")


# IAM ------------------------------------------------------------------------------------------
def _policy(document: Any) -> Any:
    # botocore decodes policy documents; a raw answer is URL-encoded JSON.
    if isinstance(document, str):
        return json.loads(unquote(document))
    return document


def _day(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value[:10]
    return value.astimezone(UTC).date().isoformat() if value.tzinfo else value.date().isoformat()


def is_managed_role(role: dict[str, Any]) -> bool:
    """Roles Portcullis creates for EC2, EKS and RDS grants (path /portcullis/) are not
    resources of their own: access to them is requested through their EC2 instance, EKS
    cluster or database, whose owners and rules apply."""
    return role.get("Path") == MANAGED_PATH


def role_record(account_id: str, role: dict[str, Any], ingester_role: str = "") -> ResourceRecord:
    last_used = role.get("RoleLastUsed") or {}
    tags = tag_dict(role.get("Tags"))
    reason = role_not_requestable_reason(
        role["RoleName"], role.get("Path", "/"), tags, ingester_role
    )
    return ResourceRecord(
        type=IAM_ROLE,
        remote_id=role["Arn"],
        name=role["RoleName"],
        arn=role["Arn"],
        account_id=account_id,
        parent=_parent(account_id),
        tags=tags,
        metadata={
            # Shown on the resource page; requests are refused while it is set.
            **({NOT_REQUESTABLE: reason} if reason else {}),
            "role_name": role["RoleName"],
            "role_id": role.get("RoleId", ""),
            "path": role.get("Path", "/"),
            "description": role.get("Description", ""),
            "trust_policy": _policy(role.get("AssumeRolePolicyDocument")),
            "max_session_duration": role.get("MaxSessionDuration", 3600),
            # To the day: AWS moves a role's last use with every session (the ingester
            # role's with every sync), and reviews ask "unused for 90 days", not the minute.
            "last_used_on": _day(last_used.get("LastUsedDate")),
            "last_used_region": last_used.get("Region", ""),
        },
        levels=[ASSUME_LEVEL],
    )


def iam_scope(account_id: str) -> Scope:
    return Scope(account_id, "", "iam")


def fetch_iam_roles(
    iam: Any, account_id: str, names: Iterable[str] | None = None, *, ingester_role: str = ""
) -> ScopeResult:
    """The account's roles with tags, trust policy, maximum session and last use.

    The full listing takes two paginated calls rather than one GetRole per role:
    ListRoles has the maximum session duration, GetAccountAuthorizationDetails the tags
    and the last use."""
    if names is not None:
        return _fetch_iam_roles_by_name(iam, account_id, frozenset(names), ingester_role)
    result = ScopeResult(scope=iam_scope(account_id))
    details = {
        r["Arn"]: r
        for r in paginate(
            iam.get_paginator("get_account_authorization_details"),
            "RoleDetailList",
            Filter=["Role"],
        )
    }
    for role in paginate(iam.get_paginator("list_roles"), "Roles"):
        if is_managed_role(role):
            continue
        merged = {**details.get(role["Arn"], {}), **{k: v for k, v in role.items() if v}}
        result.resources.append(role_record(account_id, merged, ingester_role))
    result.sweeps = [Sweep(type=IAM_ROLE, account_id=account_id)]
    return result


def _fetch_iam_roles_by_name(
    iam: Any, account_id: str, names: frozenset[str], ingester_role: str
) -> ScopeResult:
    result = ScopeResult(scope=iam_scope(account_id), complete_scope=False)
    for name in sorted(names):
        try:
            role = iam.get_role(RoleName=identifier_from_arn(name))["Role"]
        except ClientError as exc:
            if error_code(exc) == "NoSuchEntity":
                continue
            raise
        if is_managed_role(role):
            continue  # swept like a role that is gone, should one have been recorded
        result.resources.append(role_record(account_id, role, ingester_role))
    result.sweeps = [Sweep(type=IAM_ROLE, account_id=account_id, predicate=_ids_predicate(names))]
    return result


# EC2 ------------------------------------------------------------------------------------------
def instance_record(account_id: str, region: str, instance: dict[str, Any]) -> ResourceRecord:
    tags = tag_dict(instance.get("Tags"))
    instance_id = instance["InstanceId"]
    return ResourceRecord(
        type=EC2_INSTANCE,
        remote_id=instance_id,
        name=tags.get("Name") or instance_id,
        arn=f"arn:aws:ec2:{region}:{account_id}:instance/{instance_id}",
        account_id=account_id,
        region=region,
        parent=_parent(account_id),
        tags=tags,
        metadata={
            "state": instance.get("State", {}).get("Name", ""),
            "instance_type": instance.get("InstanceType", ""),
            "private_ip": instance.get("PrivateIpAddress", ""),
            "public_ip": instance.get("PublicIpAddress", ""),
            # AWS sets Platform only for Windows; PlatformDetails names every platform.
            "platform": instance.get("PlatformDetails") or instance.get("Platform") or "Linux/UNIX",
        },
        levels=[SSM_LEVEL],
    )


def fetch_ec2_instances(
    ec2: Any, account_id: str, region: str, instance_ids: Iterable[str] | None = None
) -> ScopeResult:
    """The region's instances. Terminated (or terminating) ones count as gone.

    Specific instances are asked for with an ``instance-id`` filter: unlike InstanceIds,
    it answers without the ones that no longer exist instead of failing the call."""
    ids = frozenset(instance_ids) if instance_ids is not None else None
    result = ScopeResult(scope=Scope(account_id, region, "ec2"), complete_scope=ids is None)
    kwargs: dict[str, Any] = {}
    if ids is not None:
        if not ids:
            return result
        kwargs["Filters"] = [{"Name": "instance-id", "Values": sorted(ids)}]
    for reservation in paginate(ec2.get_paginator("describe_instances"), "Reservations", **kwargs):
        for instance in reservation.get("Instances", []):
            if instance.get("State", {}).get("Name") in GONE_EC2_STATES:
                continue
            result.resources.append(instance_record(account_id, region, instance))
    result.sweeps = [Sweep(type=EC2_INSTANCE, account_id=account_id, region=region, remote_ids=ids)]
    return result


# EKS ------------------------------------------------------------------------------------------
def cluster_record(account_id: str, region: str, cluster: dict[str, Any]) -> ResourceRecord:
    vpc = cluster.get("resourcesVpcConfig") or {}
    return ResourceRecord(
        type=EKS_CLUSTER,
        remote_id=cluster["arn"],
        name=cluster["name"],
        arn=cluster["arn"],
        account_id=account_id,
        region=region,
        parent=_parent(account_id),
        tags=tag_dict(cluster.get("tags")),
        metadata={
            "version": cluster.get("version", ""),
            "endpoint": cluster.get("endpoint", ""),
            "endpoint_public_access": bool(vpc.get("endpointPublicAccess", False)),
            "endpoint_private_access": bool(vpc.get("endpointPrivateAccess", False)),
            "public_access_cidrs": vpc.get("publicAccessCidrs", []),
        },
        levels=list(EKS_LEVELS),
    )


def fetch_eks_clusters(
    eks: Any, account_id: str, region: str, names: Iterable[str] | None = None
) -> ScopeResult:
    """The region's clusters (ListClusters gives names only: one DescribeCluster each)."""
    wanted = frozenset(names) if names is not None else None
    result = ScopeResult(scope=Scope(account_id, region, "eks"), complete_scope=wanted is None)
    cluster_names = (
        sorted({identifier_from_arn(n) for n in wanted})
        if wanted is not None
        else paginate(eks.get_paginator("list_clusters"), "clusters")
    )
    for name in cluster_names:
        try:
            cluster = eks.describe_cluster(name=name)["cluster"]
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                continue  # deleted since it was listed, or by the event being handled
            raise
        if cluster.get("status") in GONE_STATUSES:
            continue
        result.resources.append(cluster_record(account_id, region, cluster))
    result.sweeps = [
        Sweep(
            type=EKS_CLUSTER,
            account_id=account_id,
            region=region,
            predicate=_ids_predicate(wanted) if wanted is not None else None,
        )
    ]
    return result


# RDS and Aurora -------------------------------------------------------------------------------
def db_levels(tags: dict[str, str]) -> list[LevelRecord]:
    """Database users, from the ``portcullis:db-users`` tag (comma-separated)."""
    users = dict.fromkeys(u.strip() for u in tags.get(DB_USERS_TAG, "").split(",") if u.strip())
    return [
        LevelRecord(user, user, f"Connect as database user {user} with IAM authentication.")
        for user in users
    ]


def db_instance_record(account_id: str, region: str, db: dict[str, Any]) -> ResourceRecord:
    endpoint = db.get("Endpoint") or {}
    return _db_record(
        account_id,
        region,
        db,
        resource_type=RDS_INSTANCE_TYPES[db["Engine"]],
        arn=db["DBInstanceArn"],
        name=db["DBInstanceIdentifier"],
        details={
            "dbi_resource_id": db.get("DbiResourceId", ""),
            "endpoint": endpoint.get("Address", ""),
            "port": endpoint.get("Port") or db.get("DbInstancePort"),
        },
    )


def db_cluster_record(account_id: str, region: str, db: dict[str, Any]) -> ResourceRecord:
    return _db_record(
        account_id,
        region,
        db,
        resource_type=RDS_CLUSTER_TYPES[db["Engine"]],
        arn=db["DBClusterArn"],
        name=db["DBClusterIdentifier"],
        details={
            "db_cluster_resource_id": db.get("DbClusterResourceId", ""),
            "endpoint": db.get("Endpoint", ""),
            "reader_endpoint": db.get("ReaderEndpoint", ""),
            "port": db.get("Port"),
        },
    )


def _db_record(
    account_id: str,
    region: str,
    db: dict[str, Any],
    *,
    resource_type: str,
    arn: str,
    name: str,
    details: dict[str, Any],
) -> ResourceRecord:
    """An RDS instance or Aurora cluster: what both describe alike, with ``details``."""
    tags = tag_dict(db.get("TagList"))
    return ResourceRecord(
        type=resource_type,
        remote_id=arn,
        name=name,
        arn=arn,
        account_id=account_id,
        region=region,
        parent=_parent(account_id),
        tags=tags,
        metadata={
            "engine": db["Engine"],
            "engine_version": db.get("EngineVersion", ""),
            "iam_auth_enabled": bool(db.get("IAMDatabaseAuthenticationEnabled", False)),
            "publicly_accessible": bool(db.get("PubliclyAccessible", False)),
            **details,
            "master_username": db.get("MasterUsername", ""),
        },
        levels=db_levels(tags),
    )


def fetch_rds(
    rds: Any,
    account_id: str,
    region: str,
    *,
    instance_ids: Iterable[str] | None = None,
    cluster_ids: Iterable[str] | None = None,
    instances: bool = True,
    clusters: bool = True,
) -> ScopeResult:
    """The region's MySQL and PostgreSQL instances and Aurora clusters (other engines,
    and the instances inside Aurora clusters, are not resources of their own).

    Specific databases are asked for with the ``db-instance-id`` / ``db-cluster-id``
    filters, which take identifiers or ARNs and leave out those that no longer exist."""
    wanted_instances = frozenset(instance_ids) if instance_ids is not None else None
    wanted_clusters = frozenset(cluster_ids) if cluster_ids is not None else None
    complete = instances and clusters and wanted_instances is None and wanted_clusters is None
    result = ScopeResult(scope=Scope(account_id, region, "rds"), complete_scope=complete)
    if instances and wanted_instances != frozenset():
        kwargs: dict[str, Any] = {}
        if wanted_instances is not None:
            kwargs["Filters"] = [{"Name": "db-instance-id", "Values": sorted(wanted_instances)}]
        for db in paginate(rds.get_paginator("describe_db_instances"), "DBInstances", **kwargs):
            if db.get("Engine") in RDS_INSTANCE_TYPES and db.get("DBInstanceStatus") not in (
                GONE_STATUSES
            ):
                result.resources.append(db_instance_record(account_id, region, db))
        predicate = _ids_predicate(wanted_instances) if wanted_instances is not None else None
        result.sweeps += [
            Sweep(type=t, account_id=account_id, region=region, predicate=predicate)
            for t in sorted(set(RDS_INSTANCE_TYPES.values()))
        ]
    if clusters and wanted_clusters != frozenset():
        kwargs = {}
        if wanted_clusters is not None:
            kwargs["Filters"] = [{"Name": "db-cluster-id", "Values": sorted(wanted_clusters)}]
        for db in paginate(rds.get_paginator("describe_db_clusters"), "DBClusters", **kwargs):
            if db.get("Engine") in RDS_CLUSTER_TYPES and db.get("Status") not in GONE_STATUSES:
                result.resources.append(db_cluster_record(account_id, region, db))
        predicate = _ids_predicate(wanted_clusters) if wanted_clusters is not None else None
        result.sweeps += [
            Sweep(type=t, account_id=account_id, region=region, predicate=predicate)
            for t in sorted(set(RDS_CLUSTER_TYPES.values()))
        ]
    return result
