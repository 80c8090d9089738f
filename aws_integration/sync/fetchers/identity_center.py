"""IAM Identity Center, in the management account: permission sets and where they are
provisioned, account assignments, and the identity store's users, groups and memberships."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from access.choices import ResourceType
from aws_integration.clients import error_code
from aws_integration.setup_policies import permission_set_not_requestable_reason
from aws_integration.sync.fetch_results import (
    IdcUserRecord,
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
from aws_integration.sync.fetchers.organizations import MANAGEMENT_ACCOUNT_REASON

SSO_SERVICE = "sso-admin"
STORE_SERVICE = "identitystore"
OU = ResourceType.ORGANIZATIONAL_UNIT.value
ACCOUNT = ResourceType.ACCOUNT.value
GROUP = ResourceType.IDC_GROUP.value
IDC_ROLE = ResourceType.IDC_ROLE.value
MEMBER_LEVEL = LevelRecord("member", "Member", "Membership of the Identity Center group.")
ASSIGNED_LEVEL = LevelRecord(
    "assigned", "Assigned", "An account assignment of this permission set in this account."
)
_NOT_FOUND = ("ResourceNotFoundException",)


@dataclass(frozen=True)
class PermissionSet:
    """A permission set's name and session length, by ARN, and why it may not be assigned
    ("" when it is tagged requestable)."""

    arn: str
    name: str
    description: str = ""
    session_duration: str = ""
    not_requestable: str = ""

    def requestability(self) -> dict[str, str]:
        """The metadata that marks what depends on an untagged permission set (its access
        levels, its Identity Center roles) as not requestable, with the reason."""
        return {NOT_REQUESTABLE: self.not_requestable} if self.not_requestable else {}

    def level(self) -> LevelRecord:
        return LevelRecord(
            remote_id=self.arn,
            name=self.name,
            description=self.description,
            metadata={"session_duration": self.session_duration, **self.requestability()},
        )


def permission_sets_scope(management_account_id: str, region: str) -> Scope:
    return Scope(management_account_id, region, SSO_SERVICE)


def identity_store_scope(management_account_id: str, region: str) -> Scope:
    return Scope(management_account_id, region, STORE_SERVICE)


def assignments_scope(account_id: str, region: str) -> Scope:
    # Listed in the management account, but about (and swept per) the target account.
    return Scope(account_id, region, SSO_SERVICE)


# Permission sets -------------------------------------------------------------------------
def _describe_permission_set(sso: Any, instance_arn: str, arn: str) -> PermissionSet:
    ps = sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)[
        "PermissionSet"
    ]
    tags = tag_dict(
        paginate(
            sso.get_paginator("list_tags_for_resource"),
            "Tags",
            InstanceArn=instance_arn,
            ResourceArn=arn,
        )
    )
    return PermissionSet(
        arn=arn,
        name=ps.get("Name") or identifier_from_arn(arn),
        description=ps.get("Description", ""),
        session_duration=ps.get("SessionDuration", ""),
        not_requestable=permission_set_not_requestable_reason(tags),
    )


def fetch_permission_sets(
    sso: Any,
    instance_arn: str,
    management_account_id: str,
    region: str,
    *,
    changed: Iterable[str] = (),
) -> tuple[ScopeResult, dict[str, PermissionSet]]:
    """Every permission set: the access levels of every account and every OU. A grant on
    an account assigns the permission set there, and AWS provisions it into the account
    on that first assignment; a grant on an OU assigns it in each account below it. Those
    not tagged requestable are levels too, marked so: shown, never assignable.

    ``changed`` names permission sets an event touched: the Identity Center roles of those
    gone are swept with them."""
    result = ScopeResult(scope=permission_sets_scope(management_account_id, region))
    arns = paginate(
        sso.get_paginator("list_permission_sets"), "PermissionSets", InstanceArn=instance_arn
    )
    permission_sets = {arn: _describe_permission_set(sso, instance_arn, arn) for arn in arns}
    levels = sorted((ps.level() for ps in permission_sets.values()), key=lambda lv: lv.name)
    # The same levels for every account: one list, applied as a set by the writer, not a
    # listing per account and permission set.
    result.type_level_sets[ACCOUNT] = levels
    result.type_level_sets[OU] = levels
    for arn in changed:
        if arn not in permission_sets:
            result.sweeps.append(
                Sweep(
                    type=IDC_ROLE,
                    predicate=lambda row, arn=arn: row.metadata.get("permission_set_arn") == arn,  # type: ignore[misc]  # bound
                )
            )
    return result, permission_sets


def fetch_account_assignments(
    sso: Any,
    instance_arn: str,
    region: str,
    account_id: str,
    account_name: str,
    permission_sets: dict[str, PermissionSet],
    management_account_id: str = "",
) -> ScopeResult:
    """The permission sets provisioned to one account (one Identity Center role each) and
    who is assigned each of them. The account's access levels are every permission set,
    provisioned there or not (see ``fetch_permission_sets``)."""
    result = ScopeResult(scope=assignments_scope(account_id, region))
    provisioned = list(
        dict.fromkeys(  # moto lists a permission set once per provisioning call
            paginate(
                sso.get_paginator("list_permission_sets_provisioned_to_account"),
                "PermissionSets",
                InstanceArn=instance_arn,
                AccountId=account_id,
            )
        )
    )
    user_assignments: set[tuple[str, str]] = set()
    for arn in provisioned:
        ps = permission_sets.get(arn) or PermissionSet(arn=arn, name=identifier_from_arn(arn))
        assignments = paginate(
            sso.get_paginator("list_account_assignments"),
            "AccountAssignments",
            InstanceArn=instance_arn,
            AccountId=account_id,
            PermissionSetArn=arn,
        )
        groups = sorted({a["PrincipalId"] for a in assignments if a["PrincipalType"] == "GROUP"})
        users = sorted({a["PrincipalId"] for a in assignments if a["PrincipalType"] == "USER"})
        user_assignments.update((arn, user_id) for user_id in users)
        result.resources.append(
            ResourceRecord(
                type=IDC_ROLE,
                remote_id=f"{account_id}/{arn}",
                name=f"{ps.name} @ {account_name or account_id}",
                account_id=account_id,
                parent=(ACCOUNT, account_id),
                metadata={
                    # Shown on the resource page; requests are refused while it is set.
                    **ps.requestability(),
                    **(
                        {NOT_REQUESTABLE: MANAGEMENT_ACCOUNT_REASON}
                        if account_id == management_account_id
                        else {}
                    ),
                    "permission_set_arn": arn,
                    "permission_set_name": ps.name,
                    "session_duration": ps.session_duration,
                    "assigned_groups": groups,
                    "assigned_users": users,
                },
                levels=[ASSIGNED_LEVEL],
            )
        )
    result.sweeps = [Sweep(type=IDC_ROLE, account_id=account_id)]
    result.user_assignments = {account_id: user_assignments}
    return result


# Identity store ------------------------------------------------------------------------------
def user_record(user: dict[str, Any]) -> IdcUserRecord:
    emails = user.get("Emails") or []
    primary = next((e for e in emails if e.get("Primary")), emails[0] if emails else {})
    user_name = user.get("UserName", "")
    # Identity Center user names are often the email; use it when no email is set.
    email = primary.get("Value") or (user_name if "@" in user_name else "")
    name = user.get("Name") or {}
    display = user.get("DisplayName") or " ".join(
        part for part in (name.get("GivenName"), name.get("FamilyName")) if part
    )
    return IdcUserRecord(
        remote_id=user["UserId"], user_name=user_name, email=email.strip(), display_name=display
    )


def group_record(group: dict[str, Any], management_account_id: str, region: str) -> ResourceRecord:
    return ResourceRecord(
        type=GROUP,
        remote_id=group["GroupId"],
        name=group.get("DisplayName") or group["GroupId"],
        account_id=management_account_id,
        region=region,
        metadata={"description": group.get("Description", "")},
        levels=[MEMBER_LEVEL],
    )


def _members(store: Any, store_id: str, group_id: str) -> set[str]:
    return {
        m["MemberId"]["UserId"]
        for m in paginate(
            store.get_paginator("list_group_memberships"),
            "GroupMemberships",
            IdentityStoreId=store_id,
            GroupId=group_id,
        )
        if "UserId" in m.get("MemberId", {})
    }


def fetch_identity_store(
    store: Any, store_id: str, management_account_id: str, region: str
) -> ScopeResult:
    """Every user, group and membership of the identity store."""
    result = ScopeResult(scope=identity_store_scope(management_account_id, region))
    result.idc_users = [
        user_record(u)
        for u in paginate(store.get_paginator("list_users"), "Users", IdentityStoreId=store_id)
    ]
    result.idc_users_complete = True
    groups = paginate(store.get_paginator("list_groups"), "Groups", IdentityStoreId=store_id)
    result.resources = [group_record(g, management_account_id, region) for g in groups]
    result.sweeps = [Sweep(type=GROUP)]
    result.memberships = {g["GroupId"]: _members(store, store_id, g["GroupId"]) for g in groups}
    return result


def fetch_groups(
    store: Any,
    store_id: str,
    management_account_id: str,
    region: str,
    group_ids: Iterable[str],
    *,
    known_user_ids: set[str],
    include_groups: bool = True,
) -> ScopeResult:
    """Just these groups (unless ``include_groups`` is False) and their memberships; members
    not yet known are described so they can be linked."""
    group_ids = frozenset(group_ids)
    result = ScopeResult(
        scope=identity_store_scope(management_account_id, region), complete_scope=False
    )
    result.memberships = {}
    for group_id in sorted(group_ids):
        if include_groups:
            try:
                group = store.describe_group(IdentityStoreId=store_id, GroupId=group_id)
            except ClientError as exc:
                if error_code(exc) not in _NOT_FOUND:
                    raise
                result.memberships[group_id] = set()  # a deleted group has no members
                continue
            result.resources.append(group_record(group, management_account_id, region))
        try:
            result.memberships[group_id] = _members(store, store_id, group_id)
        except ClientError as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise
            result.memberships[group_id] = set()
    if include_groups:
        result.sweeps = [Sweep(type=GROUP, remote_ids=group_ids)]
    unknown = set().union(*result.memberships.values()) - known_user_ids
    result.idc_users = []
    for user_id in sorted(unknown):
        try:
            user = store.describe_user(IdentityStoreId=store_id, UserId=user_id)
        except ClientError as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise
            continue
        result.idc_users.append(user_record(user))
    return result
