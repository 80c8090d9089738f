"""Which inventory objects an event touches, and refreshing them.

Each supported (eventSource, eventName) maps to a function returning the affected objects
as :class:`ObjectRef` values. The event is only a hint: the objects are described again in
AWS (``aws_integration.sync.refresh.refresh``), so duplicate and out-of-order events are
harmless and nothing in the event is trusted as the new state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from access.choices import ResourceType
from access.models import Resource
from aws_integration.events.parser import (
    NO_ACCOUNT,
    BadMessage,
    ParsedEvent,
    normalise_account_id,
)
from aws_integration.models import AwsApp, SyncRun
from aws_integration.sync import refresh as sync_refresh
from aws_integration.sync.engine import reapply_ou_assignments
from aws_integration.sync.object_refs import IDENTITY_CENTER_KINDS, MEMBER_KINDS, ObjectRef

Handler = Callable[[ParsedEvent, AwsApp], list[ObjectRef]]
HANDLERS: dict[tuple[str, str], Handler] = {}

# Outcomes of handle_event, also the poller's counter names.
HANDLED = "handled"  # the affected objects were refreshed
IGNORED = "ignored"  # a supported event that touches nothing Portcullis keeps
UNKNOWN = "unknown"  # an event Portcullis does not follow
REFUSED_CALL = "refused_calls"  # a call AWS refused (errorCode): it changed nothing

REGIONAL_KINDS = frozenset({"ec2_instance", "eks_cluster", "rds_instance", "rds_cluster"})

_INSTANCE_ID = re.compile(r"^i-[0-9a-zA-Z]{8,17}$")
_GUID_OR_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_PERMISSION_SET_ARN = re.compile(r"^arn:aws[a-z-]*:sso:::[A-Za-z]+/[\w-]+/ps-[0-9a-z]+$")
_ORG_ID = re.compile(r"^(ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}|r-[0-9a-z]{4,32})$")


@dataclass
class HandleResult:
    """What became of one event."""

    outcome: str
    app: AwsApp
    refs: list[ObjectRef] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def handles(source: str, *names: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for name in names:
            HANDLERS[(source, name)] = handler
        return handler

    return register


def is_supported(event: ParsedEvent) -> bool:
    return (event.source, event.name) in HANDLERS


def refs_for(event: ParsedEvent, app: AwsApp) -> list[ObjectRef] | None:
    """The objects ``event`` touches in ``app`` (deduplicated, in order), or None when the
    event is not one Portcullis follows. Raises BadMessage when the event names no usable
    account for objects that live in one (an empty region is fine: refresh() then looks in
    the app's regions)."""
    handler = HANDLERS.get((event.source, event.name))
    if handler is None:
        return None
    refs = list(dict.fromkeys(handler(event, app)))
    return [ref for ref in refs if _app_manages(app, ref) and _region_synced(app, ref)]


def find_app(event: ParsedEvent, queue_app: AwsApp) -> AwsApp:
    """The app an event belongs to: the one whose organization holds the event's account
    (its management account, or an account in its inventory), else the queue's owner."""
    account_id = event.account_id
    if not account_id or account_id == queue_app.management_account_id:
        return queue_app
    live = AwsApp.objects.filter(is_active=True)
    app = live.filter(management_account_id=account_id).order_by("pk").first()
    if app is not None:
        return app
    app_id = (
        Resource.objects.filter(
            type=ResourceType.ACCOUNT,
            remote_id=account_id,
            deleted_at__isnull=True,
            app__in=live.values("pk"),
        )
        .order_by("app_id")
        .values_list("app_id", flat=True)
        .first()
    )
    if app_id is None or app_id == queue_app.pk:
        return queue_app
    return live.get(pk=app_id)


class RefreshFailed(Exception):
    """AWS could not be read for some of an event's objects (refused, throttled, down);
    the scopes' own SyncIssues say which. Worth another attempt later."""


# An account that joins an OU gets the OU's assignments.
OU_MEMBERSHIP_EVENTS = frozenset(
    {"MoveAccount", "CreateAccountResult", "InviteAccountToOrganization", "AcceptHandshake"}
)


def handle_event(
    event: ParsedEvent, queue_app: AwsApp, *, run: SyncRun | None = None
) -> HandleResult:
    """Refreshes what ``event`` touches. Raises BadMessage when the objects cannot be
    located, RefreshFailed when AWS could not be read, and lets any other error of the
    refresh propagate, so the caller can leave the message for another attempt."""
    # Most of what a broad rule delivers is not followed: no query is spent on it.
    if not is_supported(event):
        return HandleResult(UNKNOWN, queue_app)
    if event.failed:
        return HandleResult(REFUSED_CALL, queue_app)
    app = find_app(event, queue_app)
    refs = refs_for(event, app)
    if not refs:
        return HandleResult(IGNORED, app)
    # The run is the queue's app's: another app's issues do not point at it.
    counts = dict(sync_refresh.refresh(app, refs, run=run if app.pk == queue_app.pk else None))
    failed = counts.pop("failed", 0)
    if failed:
        raise RefreshFailed(
            f"{failed} scope(s) of {app} could not be read from AWS for {event.name} "
            "(their sync issues say why)."
        )
    if event.name in OU_MEMBERSHIP_EVENTS:
        reapply_ou_assignments(app)
    return HandleResult(HANDLED, app, refs, counts)


def _app_manages(app: AwsApp, ref: ObjectRef) -> bool:
    # An app that does not manage one side ignores its events, as its full sync skips them.
    if ref.kind in IDENTITY_CENTER_KINDS:
        return app.identity_center_management
    if ref.kind in MEMBER_KINDS:
        return app.organization_management
    return True


def _region_synced(app: AwsApp, ref: ObjectRef) -> bool:
    # An empty region (a placeholder in the event) means the app's regions to refresh().
    return (
        ref.kind not in REGIONAL_KINDS
        or not ref.region
        or not app.regions
        or ref.region in app.regions
    )


# Helpers -------------------------------------------------------------------------------
def _dig(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> Iterator[Mapping[str, Any]]:
    """The elements of an EC2-style set ({"items": [...]}) or of a plain list."""
    if isinstance(value, Mapping):
        value = value.get("items")
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _account(event: ParsedEvent) -> str:
    if not event.account_id:
        seen = f" (it holds {event.account_id_seen!r})" if event.account_id_seen else ""
        raise BadMessage(
            NO_ACCOUNT,
            f"The {event.name} event names no usable account ID{seen}, so the objects it "
            "changed cannot be located; the next full sync will pick the change up.",
        )
    return event.account_id


def _valid_arn(value: Any, service: str) -> str:
    """``value`` if it is an ARN of ``service`` with no placeholder in it."""
    text = _text(value)
    if text.startswith("arn:") and f":{service}:" in text and "<" not in text:
        return text
    return ""


# EC2 -----------------------------------------------------------------------------------
def _instance_refs(event: ParsedEvent, instance_ids: Iterable[str]) -> list[ObjectRef]:
    ids = [i for i in dict.fromkeys(instance_ids) if _INSTANCE_ID.match(i)]
    if not ids:
        return []
    account_id = _account(event)
    return [ObjectRef("ec2_instance", account_id, event.region, i) for i in ids]


@handles("ec2.amazonaws.com", "RunInstances")
def run_instances(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    refs = _instance_refs(
        event, (_text(i.get("instanceId")) for i in _items(_dig(event.response, "instancesSet")))
    )
    if refs:
        return refs
    # A successful launch whose response was trimmed away: re-read the region's instances.
    return [ObjectRef("ec2_instance", _account(event), event.region)]


@handles("ec2.amazonaws.com", "TerminateInstances", "StartInstances", "StopInstances")
def change_instance_state(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    ids = [
        _text(item.get("instanceId"))
        for source in (event.request, event.response)
        for item in _items(_dig(source, "instancesSet"))
    ]
    return _instance_refs(event, ids)


@handles("ec2.amazonaws.com", "CreateTags", "DeleteTags")
def change_tags(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    # Tags on volumes, security groups, ... are not inventory: only instance ids count.
    ids = [_text(item.get("resourceId")) for item in _items(_dig(event.request, "resourcesSet"))]
    return _instance_refs(event, ids)


@handles("ec2.amazonaws.com", "EC2 Instance State-change Notification")
def instance_state_notification(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    # EventBridge's own EC2 event: it tells when "stopping" became "stopped", which the
    # StopInstances call cannot.
    return _instance_refs(event, [_text(event.request.get("instance-id"))])


# IAM -----------------------------------------------------------------------------------
@handles("iam.amazonaws.com", "CreateRole")
def create_role(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    account_id = _account(event)
    arn = _valid_arn(_dig(event.response, "role", "arn"), "iam")
    return [ObjectRef("iam_role", account_id, "", arn or _text(event.request.get("roleName")))]


@handles(
    "iam.amazonaws.com",
    "DeleteRole",
    "UpdateAssumeRolePolicy",
    "TagRole",
    "UntagRole",
    "UpdateRole",
)
def change_role(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    # Only the name: the role's path, part of its ARN, is not in these events.
    return [ObjectRef("iam_role", _account(event), "", _text(event.request.get("roleName")))]


# RDS -----------------------------------------------------------------------------------
def _identifier(value: Any) -> str:
    # RDS keeps identifiers in lower case whatever the caller typed.
    return _text(value).lower()


@handles("rds.amazonaws.com", "CreateDBInstance", "DeleteDBInstance", "ModifyDBInstance")
def change_db_instance(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    account_id, region = _account(event), event.region
    instance = _valid_arn(event.response.get("dBInstanceArn"), "rds") or _identifier(
        event.request.get("dBInstanceIdentifier")
    )
    # A rename (ModifyDBInstance newDBInstanceIdentifier): the old name goes, the new comes.
    renamed = _identifier(event.request.get("newDBInstanceIdentifier"))
    # An Aurora instance is part of its cluster, which is what the inventory holds.
    cluster = _identifier(event.request.get("dBClusterIdentifier")) or _identifier(
        event.response.get("dBClusterIdentifier")
    )
    refs = [ObjectRef("rds_instance", account_id, region, i) for i in (instance, renamed) if i]
    if cluster:
        refs.append(ObjectRef("rds_cluster", account_id, region, cluster))
    return refs or [ObjectRef("rds_instance", account_id, region)]


@handles("rds.amazonaws.com", "CreateDBCluster", "DeleteDBCluster", "ModifyDBCluster")
def change_db_cluster(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    account_id, region = _account(event), event.region
    cluster = _valid_arn(event.response.get("dBClusterArn"), "rds") or _identifier(
        event.request.get("dBClusterIdentifier")
    )
    renamed = _identifier(event.request.get("newDBClusterIdentifier"))
    refs = [ObjectRef("rds_cluster", account_id, region, c) for c in (cluster, renamed) if c]
    return refs or [ObjectRef("rds_cluster", account_id, region)]


# EKS -----------------------------------------------------------------------------------
@handles("eks.amazonaws.com", "CreateCluster", "DeleteCluster")
def change_cluster(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    account_id = _account(event)
    # The API's parameter is "name"; older events call it "clusterName".
    cluster = (
        _valid_arn(_dig(event.response, "cluster", "arn"), "eks")
        or _text(event.request.get("name"))
        or _text(event.request.get("clusterName"))
    )
    return [ObjectRef("eks_cluster", account_id, event.region, cluster)]


# IAM Identity Center: sso-admin ------------------------------------------------------------
@handles("sso.amazonaws.com", "CreateAccountAssignment", "DeleteAccountAssignment")
def change_account_assignment(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    status_key = (
        "accountAssignmentCreationStatus"
        if event.name == "CreateAccountAssignment"
        else "accountAssignmentDeletionStatus"
    )
    status = _obj(_dig(event.response, status_key))
    # The target account; a placeholder there leaves it empty, which refresh() reads as
    # every account (costlier, still right).
    target = normalise_account_id(event.request.get("targetId")) or normalise_account_id(
        status.get("targetId")
    )
    permission_set = _text(event.request.get("permissionSetArn")) or _text(
        status.get("permissionSetArn")
    )
    if not _PERMISSION_SET_ARN.match(permission_set):
        permission_set = ""
    return [ObjectRef("account_assignment", target, "", permission_set)]


@handles("sso.amazonaws.com", "CreatePermissionSet", "DeletePermissionSet", "UpdatePermissionSet")
def change_permission_set(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    arn = _text(_dig(event.response, "permissionSet", "permissionSetArn")) or _text(
        event.request.get("permissionSetArn")
    )
    if not _PERMISSION_SET_ARN.match(arn):
        return [ObjectRef("permission_set")]
    return [ObjectRef("permission_set", "", "", arn)]


@handles("sso.amazonaws.com", "TagResource", "UntagResource")
def tag_permission_set(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    # The requestable tag decides whether a permission set may be assigned: its levels and
    # its Identity Center roles (re-read with the assignments of the accounts holding one).
    arn = _text(event.request.get("resourceArn"))
    if not _PERMISSION_SET_ARN.match(arn):
        return []  # an instance's or application's tags: nothing Portcullis keeps
    accounts = (
        Resource.objects.filter(
            app=app,
            type=ResourceType.IDC_ROLE,
            metadata__permission_set_arn=arn,
            deleted_at__isnull=True,
        )
        .values_list("account_id", flat=True)
        .distinct()
    )
    return [
        ObjectRef("permission_set", "", "", arn),
        *(ObjectRef("account_assignment", account_id, "", arn) for account_id in sorted(accounts)),
    ]


# IAM Identity Center: identity store (API) and sso-directory (console) ---------------------
def _group_id(value: Any) -> str:
    text = _text(value)
    return text if _GUID_OR_ID.match(text) else ""


@handles("identitystore.amazonaws.com", "CreateGroup", "DeleteGroup", "UpdateGroup")
@handles("sso-directory.amazonaws.com", "CreateGroup", "DeleteGroup", "UpdateGroup")
def change_group(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    # identitystore answers {"groupId"}; the console's sso-directory {"group": {"groupId"}}.
    group_id = (
        _group_id(event.response.get("groupId"))
        or _group_id(_dig(event.response, "group", "groupId"))
        or _group_id(event.request.get("groupId"))
    )
    return [ObjectRef("idc_group", "", "", group_id)]


@handles("identitystore.amazonaws.com", "CreateGroupMembership")
@handles("sso-directory.amazonaws.com", "AddMemberToGroup", "RemoveMemberFromGroup")
def change_group_members(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    # The memberships of one group: its id is in every one of these events.
    return [ObjectRef("idc_group_membership", "", "", _group_id(event.request.get("groupId")))]


@handles("identitystore.amazonaws.com", "DeleteGroupMembership")
def delete_group_membership(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    # Only a membership id, which no list call answers by: re-read every group's members.
    return [ObjectRef("idc_group_membership")]


# Organizations -------------------------------------------------------------------------
def _account_ref(value: Any) -> list[ObjectRef]:
    account_id = normalise_account_id(value)
    return [ObjectRef("account", "", "", account_id)] if account_id else [ObjectRef("account")]


@handles("organizations.amazonaws.com", "CreateAccount", "CreateGovCloudAccount")
def create_account(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    # Usually IN_PROGRESS with no account ID yet: the CreateAccountResult service event
    # that follows carries it. Nothing to refresh until then.
    status = _obj(_dig(event.response, "createAccountStatus"))
    if status.get("state") == "SUCCEEDED" and status.get("accountId"):
        return _account_ref(status["accountId"])
    return []


@handles("organizations.amazonaws.com", "CreateAccountResult")
def create_account_result(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    status = _obj(_dig(event.service_details, "createAccountStatus"))
    if status.get("state") != "SUCCEEDED" or not status.get("accountId"):
        return []  # a failed creation made no account
    return _account_ref(status["accountId"])


@handles("organizations.amazonaws.com", "MoveAccount", "RemoveAccountFromOrganization")
def change_account(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    return _account_ref(event.request.get("accountId"))


@handles("organizations.amazonaws.com", "LeaveOrganization")
def leave_organization(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    # Called by the member account itself: the event's account is the one leaving.
    return _account_ref(_account(event))


@handles("organizations.amazonaws.com", "CreateOrganizationalUnit")
def create_organizational_unit(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    ou_id = _text(_dig(event.response, "organizationalUnit", "id"))
    return [ObjectRef("ou", "", "", ou_id if _ORG_ID.match(ou_id) else "")]


@handles("organizations.amazonaws.com", "DeleteOrganizationalUnit", "UpdateOrganizationalUnit")
def change_organizational_unit(event: ParsedEvent, app: AwsApp) -> list[ObjectRef]:
    ou_id = _text(event.request.get("organizationalUnitId"))
    return [ObjectRef("ou", "", "", ou_id if _ORG_ID.match(ou_id) else "")]
