"""Identity Center grants, made in the app's management account: membership of an identity
store group, and account assignments of a permission set to the user in one account (an
AWS account or an Identity Center role) or in every active account below an OU.

Account assignments are asynchronous in AWS: the create and delete calls answer with a
request that is polled until it SUCCEEDED or FAILED. Before changing anything the drivers
read what the user already holds (one ListAccountAssignmentsForPrincipal), so granting
what exists or revoking what is gone makes no change, and a repeated OU apply costs the
OU listing and that one read.

Account assignments are one per (user, account, permission set) in AWS, whichever grant
asked for them: an account grant, an Identity Center role grant and an OU grant can share
one. Removing one of them keeps the AWS assignment while another present Assignment of
the user still covers that account and permission set.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from allauth.account.models import EmailAddress
from botocore.exceptions import ClientError
from django.db.models import Exists, OuterRef
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

from access.choices import ASSIGNMENT_IN_AWS, GrantSource, GrantStatus, ResourceType
from access.drivers import Driver, DriverError, Outcome
from access.models import Assignment, Grant, User
from aws_integration import setup_policies
from aws_integration.grants import base
from aws_integration.models import AwsApp, IdentityCenterUser

GROUP = ResourceType.IDC_GROUP.value
ACCOUNT = ResourceType.ACCOUNT.value
IDC_ROLE = ResourceType.IDC_ROLE.value
OU = ResourceType.ORGANIZATIONAL_UNIT.value
ASSIGNMENT_TYPES = (ACCOUNT, IDC_ROLE, OU)

PRINCIPAL_TYPE = "USER"
TARGET_TYPE = "AWS_ACCOUNT"
ACTIVE = "ACTIVE"
IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
NOT_FOUND = "ResourceNotFoundException"
CONFLICT = "ConflictException"
OU_GONE = ("ParentNotFoundException", "OrganizationalUnitNotFoundException")

# Assignment requests usually finish within seconds; poll from 0.2 s, doubling up to 5 s
# between reads, and give up (to be retried later) after two minutes.
POLL_FIRST_WAIT = 0.2
POLL_MAX_WAIT = 5.0
POLL_LIMIT = 120.0

_SETTINGS = (
    "identity_center_instance_arn",
    "identity_store_id",
    "identity_center_region",
)


# The app's Identity Center ---------------------------------------------------------------
@dataclass(frozen=True)
class IdentityCenter:
    """The app's Identity Center instance and identity store, reached from the management
    account; clients are made once per driver call."""

    app: AwsApp
    instance_arn: str
    store_id: str
    region: str

    def _client(self, service: str) -> Any:
        return base.client_for(self.app, self.app.management_account_id, service, self.region)

    @cached_property
    def sso(self) -> Any:
        return self._client("sso-admin")

    @cached_property
    def store(self) -> Any:
        return self._client("identitystore")

    @cached_property
    def organizations(self) -> Any:
        return self._client("organizations")


def _setting_name(field: str) -> str:
    return str(AwsApp._meta.get_field(field).verbose_name)  # type: ignore[union-attr]  # a column


def identity_center_of(app: AwsApp) -> IdentityCenter:
    """The app's Identity Center, or a DriverError naming the setting to fill in."""
    if not app.identity_center_management:
        raise DriverError(
            f"The AWS app {app.name} does not manage IAM Identity Center: turn on "
            f"'{_setting_name('identity_center_management')}' on the app's page in the "
            "admin (with the instance ARN, identity store ID and region), then the grant is "
            "retried.",
            retryable=False,
        )
    missing = [_setting_name(field) for field in _SETTINGS if not getattr(app, field)]
    if missing:
        raise DriverError(
            f"The AWS app {app.name} has no {', '.join(missing)}: fill it in on the app's "
            "page in the admin, then the grant is retried.",
            retryable=False,
        )
    return IdentityCenter(
        app=app,
        instance_arn=app.identity_center_instance_arn,
        store_id=app.identity_store_id,
        region=app.identity_center_region,
    )


def _code(exc: ClientError) -> str:
    return base.error_code(exc)


# The user in the identity store -----------------------------------------------------------
def find_user_id(ic: IdentityCenter, user: User) -> str | None:
    """The portal user's Identity Center user id: the synced link first, else a live
    look-up by email (exact through GetUserId, then ignoring case through ListUsers).

    The look-up is only for an address verified as the user's, and never finds an Identity
    Center user linked to someone else: an address typed in is nobody's proof of identity."""
    linked = (
        IdentityCenterUser.objects.filter(app=ic.app, portal_user=user, deleted_at__isnull=True)
        .order_by("pk")
        .values_list("remote_id", flat=True)
        .first()
    )
    if linked:
        return linked
    email = (user.email or "").strip()
    if (
        not email
        or not EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists()
    ):
        return None
    found = _look_up_by_email(ic, email)
    if (
        found is not None
        and IdentityCenterUser.objects.filter(app=ic.app, remote_id=found)
        .exclude(portal_user=None)
        .exclude(portal_user=user)
        .exists()
    ):
        return None
    return found


def _look_up_by_email(ic: IdentityCenter, email: str) -> str | None:
    with base.aws_errors(f"Looking up {email} in the Identity Center identity store {ic.store_id}"):
        try:
            return ic.store.get_user_id(
                IdentityStoreId=ic.store_id,
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": "emails.value", "AttributeValue": email}
                },
            )["UserId"]
        except ClientError as exc:
            if _code(exc) != NOT_FOUND:
                raise
        wanted = email.lower()
        for page in ic.store.get_paginator("list_users").paginate(IdentityStoreId=ic.store_id):
            for candidate in page.get("Users", []):
                addresses = {
                    e.get("Value", "").strip().lower() for e in candidate.get("Emails") or []
                }
                addresses.add(candidate.get("UserName", "").strip().lower())
                if wanted in addresses:
                    return candidate["UserId"]
    return None


def require_user_id(ic: IdentityCenter, user: User) -> str:
    user_id = find_user_id(ic, user)
    if user_id is None:
        raise DriverError(
            f"{user.email or user} has no user in the Identity Center identity store "
            f"{ic.store_id} linked to them: there is none with that email (create one), "
            "or their address is not verified yet (they open the link mailed to it, or sign "
            "in once through single sign-on), or that user is linked to someone else. Then "
            "the grant is retried.",
            retryable=False,
        )
    return user_id


def _user_id_for_removal(ic: IdentityCenter, assignment: Assignment) -> str | None:
    # The user the grant was made to, even if the link changed since.
    return (assignment.driver_state or {}).get("user_id") or find_user_id(ic, assignment.user)


# Group membership -------------------------------------------------------------------------
def _membership_id(ic: IdentityCenter, group_id: str, user_id: str) -> str | None:
    try:
        return ic.store.get_group_membership_id(
            IdentityStoreId=ic.store_id, GroupId=group_id, MemberId={"UserId": user_id}
        )["MembershipId"]
    except ClientError as exc:
        if _code(exc) == NOT_FOUND:
            return None
        raise


class GroupMembershipDriver:
    """Membership of an Identity Center group (access level ``member``)."""

    def apply(self, assignment: Assignment) -> Outcome:
        ic = identity_center_of(base.app_of(assignment))
        user_id = require_user_id(ic, assignment.user)
        group = assignment.resource
        what = f"Adding {assignment.user.email} to the Identity Center group {group.name}"
        with base.aws_errors(what):
            membership = _membership_id(ic, group.remote_id, user_id)
            if membership:
                note = f"{assignment.user.email} was already a member of {group.name}."
            else:
                try:
                    membership = ic.store.create_group_membership(
                        IdentityStoreId=ic.store_id,
                        GroupId=group.remote_id,
                        MemberId={"UserId": user_id},
                    )["MembershipId"]
                except ClientError as exc:
                    # AWS answers a conflict when the membership exists (or is being
                    # changed): what counts is whether it exists now.
                    if _code(exc) != CONFLICT:
                        raise
                    membership = _membership_id(ic, group.remote_id, user_id)
                    if membership is None:
                        raise
                note = f"Added {assignment.user.email} to the Identity Center group {group.name}."
        return Outcome(state={"user_id": user_id, "membership_id": membership}, note=note)

    def remove(self, assignment: Assignment) -> Outcome:
        ic = identity_center_of(base.app_of(assignment))
        group = assignment.resource
        user_id = _user_id_for_removal(ic, assignment)
        if user_id is None:
            return Outcome(
                note=f"{assignment.user.email} has no Identity Center user, so no membership of {group.name}."
            )
        what = f"Removing {assignment.user.email} from the Identity Center group {group.name}"
        with base.aws_errors(what):
            membership = _membership_id(ic, group.remote_id, user_id)
            if membership is None:
                return Outcome(note=f"{assignment.user.email} was not a member of {group.name}.")
            try:
                ic.store.delete_group_membership(
                    IdentityStoreId=ic.store_id, MembershipId=membership
                )
            except ClientError as exc:
                if _code(exc) != NOT_FOUND:
                    raise
        return Outcome(
            note=f"Removed {assignment.user.email} from the Identity Center group {group.name}."
        )


# Account assignments ----------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Target:
    """One account assignment's target: a permission set in an account."""

    account_id: str
    permission_set_arn: str


def await_request(
    status: dict[str, Any],
    describe: Callable[[str], dict[str, Any]],
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Waits for an assignment request (``status`` as the create or delete call answered)
    to end; ``describe(request_id)`` reads its status again. FAILED raises a DriverError
    with AWS's reason; still in progress after POLL_LIMIT seconds raises a retryable one."""
    request_id = status.get("RequestId", "")
    if status.get("Status") == IN_PROGRESS:
        # The request has only just started: wait before the first read, then twice as
        # long before each next one.
        sleep(POLL_FIRST_WAIT)
        retrying = Retrying(
            retry=retry_if_result(lambda s: s.get("Status") == IN_PROGRESS),
            wait=wait_exponential(multiplier=2 * POLL_FIRST_WAIT, max=POLL_MAX_WAIT),
            # Wall time, or the waits alone: the limit holds whatever sleep function runs.
            # A plain callable is a stop condition too (stop_any calls each); the stubs want a class.
            stop=stop_after_delay(POLL_LIMIT) | (lambda state: state.idle_for >= POLL_LIMIT),  # type: ignore[operator]
            sleep=sleep,
        )
        try:
            status = retrying(describe, request_id)
        except RetryError:
            raise DriverError(
                f"{what}: AWS still reports request {request_id} in progress after "
                f"{POLL_LIMIT:.0f} seconds; it is checked again at the next attempt."
            ) from None
    if status.get("Status") == FAILED:
        raise DriverError(
            f"{what}: AWS reported the request {request_id} FAILED: "
            f"{(status.get('FailureReason') or 'no reason given').rstrip('.')}."
        )


def assigned_targets(
    ic: IdentityCenter, user_id: str, account_id: str | None = None
) -> set[Target]:
    """The permission sets assigned to the user directly, per account (one account or all)."""
    kwargs: dict[str, Any] = {
        "InstanceArn": ic.instance_arn,
        "PrincipalId": user_id,
        "PrincipalType": PRINCIPAL_TYPE,
    }
    if account_id:
        kwargs["Filter"] = {"AccountId": account_id}
    found: set[Target] = set()
    for page in ic.sso.get_paginator("list_account_assignments_for_principal").paginate(**kwargs):
        for item in page.get("AccountAssignments", []):
            if item.get("PrincipalId") == user_id and item.get("PrincipalType") == PRINCIPAL_TYPE:
                found.add(Target(item["AccountId"], item["PermissionSetArn"]))
    return found


def _assignment_args(ic: IdentityCenter, target: Target, user_id: str) -> dict[str, str]:
    return {
        "InstanceArn": ic.instance_arn,
        "TargetId": target.account_id,
        "TargetType": TARGET_TYPE,
        "PermissionSetArn": target.permission_set_arn,
        "PrincipalType": PRINCIPAL_TYPE,
        "PrincipalId": user_id,
    }


def create_assignment(ic: IdentityCenter, target: Target, user_id: str, what: str) -> None:
    with base.aws_errors(what):
        try:
            status = ic.sso.create_account_assignment(**_assignment_args(ic, target, user_id))[
                "AccountAssignmentCreationStatus"
            ]
        except ClientError as exc:
            # A conflict: another change to this assignment is under way, or it exists.
            if _code(exc) != CONFLICT or target not in assigned_targets(
                ic, user_id, target.account_id
            ):
                raise
            return
        await_request(
            status,
            lambda request_id: ic.sso.describe_account_assignment_creation_status(
                InstanceArn=ic.instance_arn, AccountAssignmentCreationRequestId=request_id
            )["AccountAssignmentCreationStatus"],
            what,
        )


def delete_assignment(ic: IdentityCenter, target: Target, user_id: str, what: str) -> None:
    with base.aws_errors(what):
        try:
            status = ic.sso.delete_account_assignment(**_assignment_args(ic, target, user_id))[
                "AccountAssignmentDeletionStatus"
            ]
        except ClientError as exc:
            if _code(exc) == NOT_FOUND:
                return
            if _code(exc) != CONFLICT or target in assigned_targets(ic, user_id, target.account_id):
                raise
            return
        await_request(
            status,
            lambda request_id: ic.sso.describe_account_assignment_deletion_status(
                InstanceArn=ic.instance_arn, AccountAssignmentDeletionRequestId=request_id
            )["AccountAssignmentDeletionStatus"],
            what,
        )


def check_requestable(ic: IdentityCenter, permission_set_arn: str, name: str) -> None:
    """Refuse to assign a permission set an admin has not tagged requestable, as AWS would
    with the ingester's policy: the refusal names the tag to set. Removing stays allowed."""
    what = f"Reading the tags of the permission set {name}"
    with base.aws_errors(what):
        try:
            tags = [
                tag
                for page in ic.sso.get_paginator("list_tags_for_resource").paginate(
                    InstanceArn=ic.instance_arn, ResourceArn=permission_set_arn
                )
                for tag in page.get("Tags", [])
            ]
        except ClientError as exc:
            if _code(exc) != NOT_FOUND:
                raise
            raise DriverError(
                f"The permission set {name} ({permission_set_arn}) no longer exists in "
                "Identity Center.",
                retryable=False,
            ) from exc
    reason = setup_policies.permission_set_not_requestable_reason(
        {t["Key"]: t.get("Value", "") for t in tags}
    )
    if reason:
        raise DriverError(
            f"Portcullis will not assign the permission set {name} ({permission_set_arn}). "
            f"{reason}",
            retryable=False,
        )


def user_assignments_lock(assignment: Assignment) -> str:
    return f"idc-assignments:{assignment.resource.app_id}:{assignment.user_id}"


# What a user's grants stand for in AWS ------------------------------------------------------
# The one answer to "which (account, permission set) assignments do this user's grants
# need": the drivers ask it before removing one, sync before recording one as observed,
# and the revocation re-check before removing one again.
COVER_QUERY_USERS = 2000
# A grant still being removed counts: AWS holds its assignment until the removal is done.
CURRENT_GRANT_STATUSES = (GrantStatus.PENDING, GrantStatus.ACTIVE, GrantStatus.REVOKING)


def _targets(
    resource_type: str,
    remote_id: str,
    account_id: str,
    permission_set_arn: Any,
    level_remote_id: str,
    driver_state: Any,
) -> set[Target]:
    """The account assignments one (resource, access level) stands for: an account's
    permission set there, an Identity Center role's permission set in its account, an
    OU's permission set in each account it was last applied to."""
    if resource_type == OU:
        accounts = (driver_state.get("accounts") or []) if isinstance(driver_state, dict) else []
        return {Target(account, level_remote_id) for account in accounts}
    if resource_type == IDC_ROLE:
        if not permission_set_arn or not account_id:
            return set()
        return {Target(account_id, str(permission_set_arn))}
    return {Target(remote_id, level_remote_id)}


def targets_of(assignment: Assignment) -> set[Target]:
    """The account assignments this Assignment stands for in AWS (see ``_targets``)."""
    resource = assignment.resource
    return _targets(
        resource.type,
        resource.remote_id,
        resource.account_id,
        (resource.metadata or {}).get("permission_set_arn"),
        assignment.access_level.remote_id,
        assignment.driver_state,
    )


def covered_targets(
    app_id: int,
    user_ids: Iterable[int],
    *,
    grant_statuses: Iterable[str],
    in_aws_only: bool = False,
    exclude: Iterable[int] = (),
) -> dict[int, set[Target]]:
    """Per user, the account assignments that their account, Identity Center role and OU
    Assignments of this app stand for, counting only Assignments with a grant in one of
    ``grant_statuses`` (with ``in_aws_only``, only those AWS holds; ``exclude``, Assignments
    to leave out). A query per 2,000 users, whatever their number of grants."""
    excluded = sorted(set(exclude))
    statuses = list(grant_statuses)
    found: dict[int, set[Target]] = defaultdict(set)
    users = sorted(set(user_ids))
    for start in range(0, len(users), COVER_QUERY_USERS):
        rows = Assignment.objects.filter(
            Exists(Grant.objects.filter(assignment=OuterRef("pk"), status__in=statuses)),
            user_id__in=users[start : start + COVER_QUERY_USERS],
            resource__app_id=app_id,
            resource__type__in=ASSIGNMENT_TYPES,
        )
        if in_aws_only:
            rows = rows.filter(status__in=ASSIGNMENT_IN_AWS)
        if excluded:
            rows = rows.exclude(pk__in=excluded)
        for user_id, *parts in rows.values_list(
            "user_id",
            "resource__type",
            "resource__remote_id",
            "resource__account_id",
            "resource__metadata__permission_set_arn",
            "access_level__remote_id",
            "driver_state",
        ):
            found[user_id] |= _targets(*parts)
    return found


def targets_held_elsewhere(assignment: Assignment) -> set[Target]:
    """What the user's other present account, Identity Center role and OU Assignments of
    this app hold in AWS: removing this Assignment must leave those assignments in place."""
    return covered_targets(
        assignment.resource.app_id,
        [assignment.user_id],
        # Only while a grant still needs it: one whose grants all ended is on its way out.
        grant_statuses=[GrantStatus.PENDING, GrantStatus.ACTIVE],
        in_aws_only=True,
        exclude=[assignment.pk],
    ).get(assignment.user_id, set())


def covered_elsewhere(assignments: list[Assignment]) -> set[int]:
    """The ids of these Assignments whose every account assignment a current (pending,
    active or revoking) grant of the same user on another account, Identity Center role or
    OU stands for: AWS holds those for that grant, not for these. One query per app."""
    by_app: dict[int, list[Assignment]] = defaultdict(list)
    for assignment in assignments:
        by_app[assignment.resource.app_id].append(assignment)
    covered: set[int] = set()
    for app_id, group in by_app.items():
        held = covered_targets(
            app_id,
            {a.user_id for a in group},
            grant_statuses=CURRENT_GRANT_STATUSES,
            exclude=[a.pk for a in group],
        )
        for assignment in group:
            targets = targets_of(assignment)
            if targets and targets <= held.get(assignment.user_id, set()):
                covered.add(assignment.pk)
    return covered


def observed_grants_for(assignment: Assignment, removed: Iterable[Target]) -> list[int]:
    """The ids of the user's active observed grants of this app (access sync found in AWS)
    whose every account assignment is among those just ``removed``: they stood for them."""
    gone = set(removed)
    if not gone:
        return []
    rows = Grant.objects.filter(
        user_id=assignment.user_id,
        resource__app_id=assignment.resource.app_id,
        resource__type__in=ASSIGNMENT_TYPES,
        source=GrantSource.OBSERVED,
        status=GrantStatus.ACTIVE,
    ).values_list(
        "pk",
        "resource__type",
        "resource__remote_id",
        "resource__account_id",
        "resource__metadata__permission_set_arn",
        "access_level__remote_id",
    )
    found: list[int] = []
    for pk, type_, remote_id, account_id, arn, level in rows:
        # An observed grant has no Assignment, so no OU accounts: only account and role rows.
        targets = _targets(type_, remote_id, account_id, arn, level, None)
        if targets and targets <= gone:
            found.append(pk)
    return sorted(found)


def target_of(assignment: Assignment) -> Target:
    resource = assignment.resource
    if resource.type == IDC_ROLE:
        arn = (resource.metadata or {}).get("permission_set_arn", "")
        if not arn or not resource.account_id:
            raise DriverError(
                f"The Identity Center role {resource.name} names no permission set or account; "
                "sync the app again to refresh it.",
                retryable=False,
            )
        return Target(resource.account_id, arn)
    return Target(resource.remote_id, assignment.access_level.remote_id)


def _describe(assignment: Assignment, target: Target) -> str:
    return f"{assignment.access_level.name} in account {target.account_id}"


class AccountAssignmentDriver:
    """A permission set assigned to the user in one account: an AWS account (access level
    = the permission set) or an Identity Center role (permission set × account)."""

    def lock_key(self, assignment: Assignment) -> str:
        # A user's account assignments can be shared by account, role and OU grants: changes
        # to them run one at a time (across processes), so that a removal never judges
        # what another grant holds while that other grant is being applied or removed.
        return user_assignments_lock(assignment)

    def apply(self, assignment: Assignment) -> Outcome:
        ic = identity_center_of(base.app_of(assignment))
        target = target_of(assignment)
        user_id = require_user_id(ic, assignment.user)
        email = assignment.user.email
        what = f"Assigning {_describe(assignment, target)} to {email}"
        check_requestable(ic, target.permission_set_arn, assignment.access_level.name)
        with base.aws_errors(what):
            held = target in assigned_targets(ic, user_id, target.account_id)
        state = {"user_id": user_id}
        if held:
            return Outcome(
                state=state, note=f"{email} already held {_describe(assignment, target)}."
            )
        create_assignment(ic, target, user_id, what)
        return Outcome(state=state, note=f"Assigned {_describe(assignment, target)} to {email}.")

    def remove(self, assignment: Assignment) -> Outcome:
        ic = identity_center_of(base.app_of(assignment))
        target = target_of(assignment)
        email = assignment.user.email
        user_id = _user_id_for_removal(ic, assignment)
        if user_id is None:
            return Outcome(note=f"{email} has no Identity Center user, so no assignment to remove.")
        what = f"Removing {_describe(assignment, target)} from {email}"
        if target in targets_held_elsewhere(assignment):
            return Outcome(
                note=f"Kept {_describe(assignment, target)} for {email}: another of their grants holds it."
            )
        with base.aws_errors(what):
            held = target in assigned_targets(ic, user_id, target.account_id)
        if not held:
            return Outcome(note=f"{email} did not hold {_describe(assignment, target)}.")
        delete_assignment(ic, target, user_id, what)
        return Outcome(
            note=f"Removed {_describe(assignment, target)} from {email}.",
            also_removed=observed_grants_for(assignment, [target]),
        )

    def covered_elsewhere(self, assignments: list[Assignment]) -> set[int]:
        return covered_elsewhere(assignments)


# Organizational units --------------------------------------------------------------------
def accounts_below(ic: IdentityCenter, ou_id: str) -> list[str]:
    """Every ACTIVE account below the OU, in nested OUs too, as AWS lists them now, but the
    management account (Portcullis grants nothing there, even through an OU)."""
    org = ic.organizations
    accounts: list[str] = []
    parents = [ou_id]
    while parents:
        parent = parents.pop(0)
        for page in org.get_paginator("list_accounts_for_parent").paginate(ParentId=parent):
            for account in page.get("Accounts", []):
                # "State" replaces the deprecated "Status"; older answers carry only the latter.
                if (account.get("State") or account.get("Status")) == ACTIVE and (
                    account["Id"] != ic.app.management_account_id
                ):
                    accounts.append(account["Id"])
        for page in org.get_paginator("list_organizational_units_for_parent").paginate(
            ParentId=parent
        ):
            parents.extend(child["Id"] for child in page.get("OrganizationalUnits", []))
    return sorted(set(accounts))


def _run_all(targets: Iterable[Target], change: Callable[[Target], None]) -> list[str]:
    """Makes every change, collecting failures, so one failing account does not hold up
    the others; the messages of the failures are returned."""
    failures: list[str] = []
    for target in targets:
        try:
            change(target)
        except DriverError as exc:
            failures.append(exc.message)
    return failures


def _raise_failures(failures: list[str], done: str) -> None:
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise DriverError(f"{failures[0]}{more}. {done}")


class OrganizationalUnitDriver:
    """A permission set (the access level) assigned to the user in every active account
    below an OU. Applying again assigns accounts that joined the OU since, and removes it
    from accounts that left; ``state["accounts"]`` lists the accounts it covers."""

    def lock_key(self, assignment: Assignment) -> str:
        # A user's account assignments can be shared by account, role and OU grants: changes
        # to them run one at a time (across processes), so that a removal never judges
        # what another grant holds while that other grant is being applied or removed.
        return user_assignments_lock(assignment)

    def apply(self, assignment: Assignment) -> Outcome:
        ic = identity_center_of(base.app_of(assignment))
        ou = assignment.resource
        permission_set = assignment.access_level.remote_id
        user_id = require_user_id(ic, assignment.user)
        email = assignment.user.email
        what = f"Assigning {assignment.access_level.name} below the OU {ou.name} to {email}"
        check_requestable(ic, permission_set, assignment.access_level.name)
        with base.aws_errors(f"Listing the accounts below the OU {ou.name}"):
            try:
                accounts = accounts_below(ic, ou.remote_id)
            except ClientError as exc:
                if _code(exc) not in OU_GONE:
                    raise
                raise DriverError(
                    f"The OU {ou.name} ({ou.remote_id}) is no longer in the organization.",
                    retryable=False,
                ) from exc
        with base.aws_errors(what):
            held = assigned_targets(ic, user_id)
        wanted = {Target(account, permission_set) for account in accounts}
        before = set((assignment.driver_state or {}).get("accounts") or [])
        left = {Target(a, permission_set) for a in before - set(accounts)}
        left -= targets_held_elsewhere(assignment) if left else set()
        to_create = sorted(wanted - held)
        to_delete = sorted(left & held)
        failures = _run_all(
            to_create,
            lambda t: create_assignment(
                ic,
                t,
                user_id,
                f"Assigning {assignment.access_level.name} to {email} in account {t.account_id}",
            ),
        )
        failures += _run_all(
            to_delete,
            lambda t: delete_assignment(
                ic,
                t,
                user_id,
                f"Removing {assignment.access_level.name} from {email} in account "
                f"{t.account_id}, which left the OU {ou.name}",
            ),
        )
        _raise_failures(failures, f"The other accounts below {ou.name} were done.")
        note = (
            f"{assignment.access_level.name} for {email} in {len(accounts)} account(s) below "
            f"the OU {ou.name}: {len(to_create)} assigned, {len(to_delete)} removed after "
            "leaving the OU."
        )
        return Outcome(
            state={"user_id": user_id, "accounts": accounts},
            note=note,
            also_removed=observed_grants_for(assignment, to_delete),
        )

    def remove(self, assignment: Assignment) -> Outcome:
        ic = identity_center_of(base.app_of(assignment))
        ou = assignment.resource
        permission_set = assignment.access_level.remote_id
        email = assignment.user.email
        user_id = _user_id_for_removal(ic, assignment)
        if user_id is None:
            return Outcome(note=f"{email} has no Identity Center user, so no assignment to remove.")
        accounts = set((assignment.driver_state or {}).get("accounts") or [])
        with base.aws_errors(f"Listing the accounts below the OU {ou.name}"):
            try:
                accounts.update(accounts_below(ic, ou.remote_id))
            except ClientError as exc:
                # A deleted OU has no accounts below it: those recorded are still cleared.
                if _code(exc) not in OU_GONE:
                    raise
        with base.aws_errors(
            f"Removing {assignment.access_level.name} below the OU {ou.name} from {email}"
        ):
            held = assigned_targets(ic, user_id)
        candidates = {Target(account, permission_set) for account in accounts} & held
        kept = candidates & targets_held_elsewhere(assignment) if candidates else set()
        to_delete = sorted(candidates - kept)
        failures = _run_all(
            to_delete,
            lambda t: delete_assignment(
                ic,
                t,
                user_id,
                f"Removing {assignment.access_level.name} from {email} in account {t.account_id}",
            ),
        )
        _raise_failures(failures, f"The other accounts below {ou.name} were done.")
        note = (
            f"Removed {assignment.access_level.name} below the OU {ou.name} from {email} in "
            f"{len(to_delete)} account(s)"
            + (f"; kept in {len(kept)} held by another of their grants." if kept else ".")
        )
        return Outcome(note=note, also_removed=observed_grants_for(assignment, to_delete))

    def covered_elsewhere(self, assignments: list[Assignment]) -> set[int]:
        return covered_elsewhere(assignments)


DRIVERS: dict[str, Driver] = {
    GROUP: GroupMembershipDriver(),
    ACCOUNT: AccountAssignmentDriver(),
    IDC_ROLE: AccountAssignmentDriver(),
    OU: OrganizationalUnitDriver(),
}
