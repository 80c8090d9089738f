"""The organization: its OU tree and accounts (with status and parent), in the
management (or delegated-administrator) account."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from access.choices import ResourceType
from aws_integration.clients import error_code
from aws_integration.sync.fetch_results import ResourceRecord, Scope, ScopeResult, Sweep
from aws_integration.sync.fetchers.base import NOT_REQUESTABLE, iso, paginate

SERVICE = "organizations"
OU = ResourceType.ORGANIZATIONAL_UNIT.value
ACCOUNT = ResourceType.ACCOUNT.value
ACTIVE = "ACTIVE"


def organization_scope(management_account_id: str) -> Scope:
    return Scope(management_account_id, "", SERVICE)


def _parent_key(parent_id: str) -> tuple[str, str] | None:
    # Roots are not resources: what sits at the root has no parent.
    return (OU, parent_id) if parent_id.startswith("ou-") else None


def ou_record(ou: dict[str, Any], parent_id: str, management_account_id: str) -> ResourceRecord:
    return ResourceRecord(
        type=OU,
        remote_id=ou["Id"],
        name=ou.get("Name") or ou["Id"],
        arn=ou.get("Arn", ""),
        account_id=management_account_id,
        parent=_parent_key(parent_id),
        metadata={"parent_id": parent_id},
    )


MANAGEMENT_ACCOUNT_REASON = (
    "it is the organization's management account, whose access controls every account; "
    "Portcullis grants nothing there."
)


def account_not_requestable_reason(account_id: str, status: str, management_account_id: str) -> str:
    """Why Portcullis grants nothing in this account ("" when it does): every permission set
    tagged requestable is offered on every account, but never on the management account,
    and not on an account AWS has not left ACTIVE (suspended, closing)."""
    if account_id == management_account_id:
        return MANAGEMENT_ACCOUNT_REASON
    if status and status != "ACTIVE":
        return f"the account is {status.lower().replace('_', ' ')} in AWS."
    return ""


def account_record(
    account: dict[str, Any], parent_id: str, management_account_id: str
) -> ResourceRecord:
    # "State" replaces the deprecated "Status"; older answers carry only the latter.
    status = account.get("State") or account.get("Status") or ""
    reason = account_not_requestable_reason(account["Id"], status, management_account_id)
    return ResourceRecord(
        type=ACCOUNT,
        remote_id=account["Id"],
        name=account.get("Name") or account["Id"],
        arn=account.get("Arn", ""),
        account_id=account["Id"],
        parent=_parent_key(parent_id),
        metadata={
            "status": status,
            "email": account.get("Email", ""),
            "parent_id": parent_id,
            "joined_at": iso(account.get("JoinedTimestamp")),
            # Shown on the resource page; requests and grants are refused while it is set.
            **({NOT_REQUESTABLE: reason} if reason else {}),
        },
    )


def fetch_organization(org: Any, management_account_id: str) -> ScopeResult:
    """Every OU (walking the tree from each root) and every account, with its parent."""
    result = ScopeResult(scope=organization_scope(management_account_id))
    parents = [root["Id"] for root in paginate(org.get_paginator("list_roots"), "Roots")]
    account_ids: set[str] = set()
    while parents:
        parent_id = parents.pop(0)
        for ou in paginate(
            org.get_paginator("list_organizational_units_for_parent"),
            "OrganizationalUnits",
            ParentId=parent_id,
        ):
            result.resources.append(ou_record(ou, parent_id, management_account_id))
            parents.append(ou["Id"])
        for account in paginate(
            org.get_paginator("list_accounts_for_parent"), "Accounts", ParentId=parent_id
        ):
            result.resources.append(account_record(account, parent_id, management_account_id))
            account_ids.add(account["Id"])
    result.sweeps = [Sweep(type=OU), Sweep(type=ACCOUNT)]
    result.org_account_ids = account_ids
    return result


def fetch_ous(org: Any, management_account_id: str, ou_ids: Iterable[str]) -> ScopeResult:
    """Just these OUs (name and parent); those AWS no longer knows are swept."""
    ou_ids = frozenset(ou_ids)
    result = ScopeResult(scope=organization_scope(management_account_id), complete_scope=False)
    for ou_id in sorted(ou_ids):
        try:
            ou = org.describe_organizational_unit(OrganizationalUnitId=ou_id)["OrganizationalUnit"]
            parent_id = org.list_parents(ChildId=ou_id)["Parents"][0]["Id"]
        except ClientError as exc:
            if error_code(exc) in ("OrganizationalUnitNotFoundException", "ChildNotFoundException"):
                continue
            raise
        result.resources.append(ou_record(ou, parent_id, management_account_id))
    result.sweeps = [Sweep(type=OU, remote_ids=ou_ids)]
    return result


def fetch_accounts(org: Any, management_account_id: str, account_ids: Iterable[str]) -> ScopeResult:
    """Just these accounts (name, status, parent); those no longer in the organization are
    swept, with everything synced in them."""
    account_ids = frozenset(account_ids)
    result = ScopeResult(scope=organization_scope(management_account_id), complete_scope=False)
    gone: set[str] = set()
    for account_id in sorted(account_ids):
        try:
            account = org.describe_account(AccountId=account_id)["Account"]
            parent_id = org.list_parents(ChildId=account_id)["Parents"][0]["Id"]
        except ClientError as exc:
            if error_code(exc) in ("AccountNotFoundException", "ChildNotFoundException"):
                gone.add(account_id)
                continue
            raise
        result.resources.append(account_record(account, parent_id, management_account_id))
    result.sweeps = [Sweep(type=ACCOUNT, remote_ids=account_ids)]
    result.removed_account_ids = gone
    return result
