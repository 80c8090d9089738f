"""Grants and the AWS-side assignments they share: create, revoke, extend, expire, and the
reconciliation that makes each assignment in the provider match the grants pointing at it.

A grant is what Portcullis promised (user, resource, level, until when). An Assignment is
the one provider-side thing overlapping grants of the same triple share. Reconciling an
assignment calls its driver outside any database transaction (an AWS call must not hold
the database's write lock), then records the outcome and the grants' new statuses with
their audit events in one transaction.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from access import drivers, leases, permissions, tokens
from access.choices import (
    ASSIGNMENT_IN_AWS,
    AssignmentStatus,
    GrantSource,
    GrantStatus,
    PropagationStatus,
    RequestKind,
    RequestStatus,
)
from access.leases import LeaseKind
from access.models import AccessLevel, AccessRequest, Actor, Assignment, Grant, Resource, User
from access.services.pending_requests import end_pending_request
from audit.services import PendingEvent, record_event, record_events

logger = logging.getLogger("access.grants")

ACTIVE_STATUSES = (GrantStatus.PENDING, GrantStatus.ACTIVE)
CURRENT_STATUSES = (GrantStatus.PENDING, GrantStatus.ACTIVE, GrantStatus.REVOKING)
# Waits between attempts after consecutive failures; the last one repeats for ever.
RETRY_BACKOFF = (
    timedelta(seconds=5),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
)
# The lease on an assignment being reconciled (and on the shared document its driver
# edits) is renewed while the driver call runs, however long (an account assignment is
# polled up to ~2 minutes); a dead process's leases run out within this.
LEASE = timedelta(seconds=4)
RESOURCE_BUSY_RETRY = timedelta(seconds=1)
# Expired grants ended per transaction: few enough that requests waiting on the audit chain
# (or on SQLite's one writer) wait only milliseconds.
EXPIRY_BATCH = 20
# A reconciliation still to do with nothing planned this long after the last change is
# considered lost and planned again by the sweep.
STALL_AFTER = timedelta(minutes=2)
REASON_EXPIRED = "Expired"
# The reason recorded when holders give up their own access without saying why.
GIVEN_UP_REASON = "Given up by the holder"
# Why an observed grant ended with an assignment of another grant that the provider shared.
REMOVED_WITH_REASON = "removed from AWS with an assignment it shared"


class GrantError(Exception):
    """A grant cannot be made or changed as asked; the message says why."""


# Labels and audit details ---------------------------------------------------------------------
def grant_details(grant: Grant, **extra: Any) -> dict[str, Any]:
    return {
        "user": grant.user.email,
        "resource_id": grant.resource_id,
        "resource": grant.resource.name,
        "resource_type": grant.resource.type,
        "access_level": grant.access_level.name,
        "source": grant.source,
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        **extra,
    }


def _load(grant_id: int) -> Grant:
    return Grant.objects.select_related("user", "resource", "access_level", "assignment").get(
        pk=grant_id
    )


# Create ---------------------------------------------------------------------------------------
def not_requestable(resource: Resource, access_level: AccessLevel | None = None) -> str:
    """Why access to ``resource`` (at ``access_level``) cannot be requested or granted, as
    sync found it (an untagged IAM role or permission set): "" when it can. Requests,
    approvals and admins' direct grants all ask this."""
    if resource.not_requestable_reason:
        return f"Access to {resource.name} cannot be requested: {resource.not_requestable_reason}"
    if access_level is not None and access_level.not_requestable_reason:
        return (
            f"Access to {resource.name} ({access_level.name}) cannot be requested: "
            f"{access_level.not_requestable_reason}"
        )
    return ""


def create_grant(
    *,
    user: User,
    resource: Resource,
    access_level: AccessLevel,
    expires_at: datetime | None,
    source: str,
    actor: Actor,
    request: Any = None,
    reason: str = "",
) -> Grant:
    """A new grant, pending until its assignment is applied in the provider (queued once
    the caller's transaction commits). A grant made directly (with no request behind it)
    is never for the person making it: see ``check_direct_grant``."""
    if request is None:
        check_direct_grant(actor, user)
    grant = Grant(
        user=user,
        resource=resource,
        access_level=access_level,
        source=source,
        status=GrantStatus.PENDING,
        starts_at=timezone.now(),
        expires_at=expires_at,
        propagation_status=PropagationStatus.IN_PROGRESS,
        granted_by=actor if getattr(actor, "is_authenticated", False) else None,
        request=request,
    )
    try:
        # Grant.clean alone: the objects are at hand, so full_clean's lookups of each
        # foreign key would only cost queries on the approval path.
        grant.clean()
    except ValidationError as exc:
        raise GrantError(" ".join(exc.messages)) from None
    if refusal := not_requestable(resource, access_level):
        raise GrantError(refusal)
    # No savepoint: what fails in here fails the caller's change with it.
    with transaction.atomic(savepoint=False):
        grant.assignment_id = _planned_assignment(user, resource, access_level)
        grant.save(force_insert=True)
        record_event(
            "grant.created",
            actor=actor,
            target=grant,
            details=grant_details(
                grant, request_id=request.pk if request is not None else None, reason=reason
            ),
        )
    return grant


def check_direct_grant(actor: Actor, user: User) -> None:
    """Nobody grants access to themselves: an admin's own access comes from a request that
    someone else decides, or from another admin's direct grant (as ``decide`` never lets
    admins override their own request). Raises GrantError."""
    if actor is not None and actor.pk is not None and actor.pk == user.pk:
        raise GrantError(
            "You cannot grant access to yourself: ask another admin to grant it, or request "
            "it so that someone else decides."
        )


def _assignment_for(user: User, resource: Resource, access_level: AccessLevel) -> Assignment:
    assignment = Assignment.objects.filter(
        user=user, resource=resource, access_level=access_level
    ).first()
    if assignment is not None:
        return assignment
    # Created, or (made by someone else meanwhile) left as it is but for the plan, which
    # the caller sets next anyway: one statement, with no savepoint to recover from a
    # duplicate. Its id is all the caller needs of the row.
    (assignment,) = Assignment.objects.bulk_create(
        [Assignment(user=user, resource=resource, access_level=access_level)],
        update_conflicts=True,
        unique_fields=["user", "resource", "access_level"],
        update_fields=["next_attempt_at"],
    )
    return assignment


# Revoke ----------------------------------------------------------------------------------------
def check_may_revoke(actor: User, grant: Grant) -> None:
    """PermissionDenied unless ``actor`` may end the grant (``permissions.can_revoke_grant``):
    for ``revoke_grant``, and for the page that asks to confirm it before offering it."""
    if not permissions.can_revoke_grant(actor, grant):
        raise PermissionDenied("Only the holder, the resource's owners and admins end access.")


def revoke_grant(grant: Grant, *, actor: Actor, reason: str, expired: bool = False) -> bool:
    """Ends a grant: it turns ``revoking`` at once and ``revoked`` when the provider no longer
    holds the access (or when another current grant still needs the shared assignment).
    Returns False when the grant had already ended. Observed grants (access found in AWS)
    are removed from AWS too: that is what revoking them means. Holders giving up their
    own access need give no reason; anyone else must.

    Who may revoke is checked here, so pages, the API and the admin cannot differ:
    ``permissions.can_revoke_grant``, else PermissionDenied. ``actor`` None means the
    system (expiry, a one-off command)."""
    if actor is not None:
        check_may_revoke(actor, grant)
    reason = (reason or "").strip()
    if not reason and actor is not None and actor.pk is not None and actor.pk == grant.user_id:
        reason = GIVEN_UP_REASON
    if not reason:
        raise GrantError("Say why the access is revoked.")
    with transaction.atomic():
        return bool(_end_grants([grant.pk], actor=actor, reason=reason, expired=expired))


def _end_grants(grant_ids: list[int], *, actor: Actor, reason: str, expired: bool) -> list[Grant]:
    """Revokes these grants inside the caller's transaction (``revoke_grant`` for one, an
    expiry batch for many); returns those it ended. Their events are written together,
    then their assignments planned: the audit chain is locked for the end of the
    transaction only, and before the assignments' rows, in the order an approval locks
    them."""
    now = timezone.now()
    ended = [
        grant
        for pk in grant_ids
        if (grant := _mark_revoking(pk, actor=actor, reason=reason, expired=expired, now=now))
        is not None
    ]
    action = "grant.expired" if expired else "grant.revoked"
    record_events(
        [PendingEvent.about(action, g, grant_details(g, reason=reason)) for g in ended],
        actor=actor,
    )
    _cancel_pending_extensions(ended, now)
    for grant in ended:
        assert grant.assignment_id is not None  # _mark_revoking gives it one
        plan_reconcile(grant.assignment_id)
    return ended


def _mark_revoking(
    grant_id: int, *, actor: Actor, reason: str, expired: bool, now: datetime
) -> Grant | None:
    """Turns the grant ``revoking``, inside the caller's transaction; None when it had
    already ended (or, ``expired``, was extended since it was found due). Its event and
    its assignment's plan are ``_end_grants``'s."""
    still = Grant.objects.filter(pk=grant_id, status__in=ACTIVE_STATUSES)
    if expired:
        # An extension committed since the grant was found due keeps it.
        still = still.filter(expires_at__lte=now)
    changed = still.update(
        status=GrantStatus.REVOKING,
        revoked_at=now,
        revoked_by=actor if getattr(actor, "is_authenticated", False) else None,
        revoke_reason=reason[:2000],
        updated_at=now,
    )
    if not changed:
        return None
    grant = _load(grant_id)
    if grant.assignment_id is None:
        assignment = _assignment_for(grant.user, grant.resource, grant.access_level)
        if assignment.status == AssignmentStatus.ABSENT and grant.source == GrantSource.OBSERVED:
            # Found in AWS, so it is there until removed.
            assignment.mark_found_in_aws(now)
        Grant.objects.filter(pk=grant.pk).update(assignment=assignment)
        grant.assignment = assignment
    assert grant.assignment_id is not None  # found or made just above
    return grant


OFFBOARD_REASON = "The user was deactivated"


def offboard_user(user: User, *, actor: Actor) -> int:
    """A deactivated user keeps no access: every current grant is revoked (removed from AWS
    by the usual path), their pending requests are canceled and their API tokens revoked,
    each audited. Returns how many grants were ended."""
    now = timezone.now()
    ended = 0
    with transaction.atomic():
        tokens.revoke_user_tokens(user, actor=actor, reason=OFFBOARD_REASON)
        for grant in Grant.objects.filter(user=user, status__in=ACTIVE_STATUSES).select_related(
            "user", "resource", "access_level"
        ):
            if revoke_grant(grant, actor=actor, reason=OFFBOARD_REASON):
                ended += 1
        for request in AccessRequest.objects.filter(user=user, status=RequestStatus.PENDING):
            end_pending_request(
                request, actor=actor, details={"user": user.email, "note": OFFBOARD_REASON}, now=now
            )
    return ended


def _cancel_pending_extensions(grants: list[Grant], now: datetime) -> None:
    """Extensions still awaiting a decision end with the grants they would extend (one
    query for all of them)."""
    by_pk = {grant.pk: grant for grant in grants}
    pending = AccessRequest.objects.filter(
        grant__in=list(by_pk), kind=RequestKind.EXTENSION, status=RequestStatus.PENDING
    ).order_by("pk")
    for request in pending:
        assert request.grant_id is not None  # filtered on it
        grant = by_pk[request.grant_id]
        end_pending_request(
            request,
            details={
                "user": grant.user.email,
                "resource": grant.resource.name,
                "access_level": grant.access_level.name,
                "kind": request.kind,
                "note": "The access it would extend has ended.",
            },
            now=now,
        )


def extend_grant(
    grant: Grant,
    *,
    by: timedelta,
    actor: Actor,
    request: Any = None,
    maximum: timedelta | None = None,
) -> Grant:
    """Moves a grant's expiry ``by`` later (from now if it is overdue), but with ``maximum``
    never to more than that from now. Audited.

    The cap is computed from the grant's row as locked here, not from the caller's copy:
    two extensions approved at once then cannot together take the access past the rule's
    maximum (the second finds the first's expiry and extends by what is left, or not at
    all)."""
    if grant.expires_at is None:
        raise GrantError("This access does not expire; there is nothing to extend.")
    now = timezone.now()
    with transaction.atomic():
        locked = Grant.objects.select_for_update().get(pk=grant.pk)
        refusal = locked.extension_refusal()
        if refusal:
            raise GrantError(refusal)
        assert locked.expires_at is not None  # extension_refusal says so otherwise
        before = locked.expires_at
        after = max(before, now) + by
        if maximum is not None:
            after = min(after, now + maximum)
        if after <= before:
            raise GrantError(
                "The access already lasts as long as the rule allows; nothing to extend."
            )
        Grant.objects.filter(pk=grant.pk).update(
            expires_at=after, warned_day_at=None, warned_hour_at=None, updated_at=now
        )
        locked.expires_at = after
        record_event(
            "grant.extended",
            actor=actor,
            target=locked,
            details=grant_details(
                locked,
                before=before.isoformat(),
                after=after.isoformat(),
                request_id=request.pk if request is not None else None,
            ),
        )
    return locked


# Expiry ----------------------------------------------------------------------------------------
def expire_due_grants(
    now: datetime | None = None, limit: int = 1000, *, reconcile_now: bool = False
) -> int:
    """Revokes every grant whose expiry has passed (the grant engine then takes the access
    away in the provider). Returns how many it ended. With ``reconcile_now`` (one-off
    runs) the access is also taken away here and now."""
    now = now or timezone.now()
    due = list(
        Grant.objects.filter(
            status__in=ACTIVE_STATUSES, expires_at__isnull=False, expires_at__lte=now
        )
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    ended: list[int] = []
    for start in range(0, len(due), EXPIRY_BATCH):
        ended += _expire(due[start : start + EXPIRY_BATCH])
    if reconcile_now and ended:
        assignment_ids = Grant.objects.filter(pk__in=ended).values_list("assignment_id", flat=True)
        for assignment_id in sorted(set(assignment_ids)):
            reconcile_assignment(assignment_id)
    return len(ended)


def _expire(grant_ids: list[int]) -> list[int]:
    """Ends these expired grants in one transaction (the audit chain is locked once for all
    of them); when that fails, one transaction each, so that a grant whose ending keeps
    failing holds back neither the others nor the engine's tick. It is logged and tried
    again at the next tick."""
    try:
        with transaction.atomic():
            batch = _end_grants(grant_ids, actor=None, reason=REASON_EXPIRED, expired=True)
        return [grant.pk for grant in batch]
    except Exception:
        if len(grant_ids) == 1:
            logger.exception(
                "Expired grant %s could not be ended; it is tried again at the next tick",
                grant_ids[0],
            )
            return []
        logger.exception(
            "Ending %d expired grants together failed; ending each alone", len(grant_ids)
        )
    ended: list[int] = []
    for pk in grant_ids:
        ended += _expire([pk])
    return ended


def next_expiry(after: datetime | None = None) -> datetime | None:
    qs = Grant.objects.filter(status__in=ACTIVE_STATUSES, expires_at__isnull=False)
    if after is not None:
        qs = qs.filter(expires_at__gt=after)
    return qs.order_by("expires_at").values_list("expires_at", flat=True).first()


# Reconciliation --------------------------------------------------------------------------------
# Planning is one path: plan_reconcile() marks the assignment due (next_attempt_at), in the
# caller's transaction, and the grant engine (access.engine) picks due assignments up within
# a tick. Retries after a failure are planned the same way, with a backoff; the engine's
# sweep is the safety net for an assignment left with work and nothing planned.
def plan_reconcile(assignment_id: int) -> None:
    """Plans the assignment's reconciliation for now. With TASKS_INLINE (tests, one-off
    commands) it is also run here once the transaction commits."""
    Assignment.objects.filter(pk=assignment_id).update(next_attempt_at=timezone.now())
    _reconcile_inline(assignment_id)


def _planned_assignment(user: User, resource: Resource, access_level: AccessLevel) -> int:
    """The id of the assignment of (user, resource, access level), created if there is
    none, planned as ``plan_reconcile`` plans it: one statement for both."""
    (assignment,) = Assignment.objects.bulk_create(
        [
            Assignment(
                user=user,
                resource=resource,
                access_level=access_level,
                next_attempt_at=timezone.now(),
            )
        ],
        update_conflicts=True,
        unique_fields=["user", "resource", "access_level"],
        update_fields=["next_attempt_at"],
    )
    _reconcile_inline(assignment.pk)
    return assignment.pk


def _reconcile_inline(assignment_id: int) -> None:
    if settings.TASKS_INLINE:
        transaction.on_commit(lambda: reconcile_assignment(assignment_id))


def due_assignments(now: datetime, *, limit: int, exclude: set[int]) -> list[int]:
    """Assignments whose reconciliation is planned for now or earlier, oldest first. One
    held by another process (a reconcile still running elsewhere) answers "busy" and is
    planned again a second later."""
    return list(
        Assignment.objects.filter(next_attempt_at__lte=now)
        .exclude(pk__in=exclude)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def retry_now(grants: list[Grant], *, actor: Actor) -> int:
    """An admin asks for another attempt in AWS for these grants now (audited per grant)."""
    grants = [g for g in grants if g.status in CURRENT_STATUSES and g.assignment_id]
    with transaction.atomic():
        for grant in grants:
            assignment = grant.assignment
            assert assignment is not None  # kept above: only grants with one
            record_event(
                "grant.retry_requested",
                actor=actor,
                target=grant,
                details=grant_details(
                    grant,
                    assignment_id=grant.assignment_id,
                    state=assignment.status,
                    attempts=assignment.attempts,
                    last_error=assignment.last_error,
                ),
            )
        for pk in sorted({g.assignment_id for g in grants if g.assignment_id}):
            plan_reconcile(pk)
    return len(grants)


def requeue_stalled(now: datetime | None = None, limit: int = 500) -> int:
    """The safety net under planning: assignments whose grants still wait to be applied
    or removed, with no attempt planned, get an attempt now. Returns how many."""
    now = now or timezone.now()
    stalled = list(
        Assignment.objects.filter(
            grants__status__in=[GrantStatus.PENDING, GrantStatus.REVOKING],
            next_attempt_at__isnull=True,
            updated_at__lte=now - STALL_AFTER,
        )
        .exclude(status=AssignmentStatus.WAITING_FOR_USER, grants__status=GrantStatus.PENDING)
        .values_list("pk", flat=True)
        .distinct()[:limit]
    )
    if stalled:
        Assignment.objects.filter(pk__in=stalled, next_attempt_at__isnull=True).update(
            next_attempt_at=now
        )
    return len(stalled)


def retry_waiting_for_subject(user: User) -> int:
    """The user's OIDC subject became known: apply their grants that waited for it."""
    pks = list(
        Assignment.objects.filter(user=user, status=AssignmentStatus.WAITING_FOR_USER).values_list(
            "pk", flat=True
        )
    )
    for pk in pks:
        plan_reconcile(pk)
    return len(pks)


@dataclass
class ReconcileResult:
    action: Literal["applied", "removed", "nothing", "busy", "failed", "waiting"]
    error: str = ""


def _work_left(assignment: Assignment) -> bool:
    """Whether the grants ask for more than the status says was done: a removal always; a
    new grant unless it waits for the user; an active one unless AWS holds it; none at all
    unless AWS is clear of it."""
    statuses = set(
        assignment.grants.filter(status__in=CURRENT_STATUSES).values_list("status", flat=True)
    )
    if GrantStatus.REVOKING in statuses:
        return True
    if GrantStatus.PENDING in statuses:
        return assignment.status != AssignmentStatus.WAITING_FOR_USER
    if GrantStatus.ACTIVE in statuses:
        return not assignment.in_aws
    return assignment.status != AssignmentStatus.ABSENT


def reapply_present(app_id: int, resource_types: list[str]) -> int:
    """Asks for a fresh apply of every assignment in AWS of these types (an OU's assignment
    reaches accounts that joined the OU since). The request is kept on the assignment until
    an apply succeeds, so a busy or failed attempt does not lose it. Returns how many."""
    return _reapply(resource__app_id=app_id, resource__type__in=resource_types)


def reapply_for_users(user_ids: list[int], resource_types: list[str]) -> int:
    """Asks for a fresh apply of these users' assignments in AWS of these types (their OIDC
    subject was cleared: each such grant then waits for the new one). Returns how many."""
    return _reapply(user_id__in=user_ids, resource__type__in=resource_types)


def _reapply(**where: Any) -> int:
    """Marks the assignments in AWS with a current grant matching ``where`` for re-apply and
    plans each."""
    pks = list(
        Assignment.objects.filter(
            status__in=ASSIGNMENT_IN_AWS, grants__status=GrantStatus.ACTIVE, **where
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    if pks:
        Assignment.objects.filter(pk__in=pks).request_reapply()
    for pk in pks:
        plan_reconcile(pk)
    return len(pks)


def reassert_revocations(keys: set[tuple[int, int, int]]) -> set[tuple[int, int, int]]:
    """Sync found access in AWS for these (user, resource, level) triples. Those whose
    Portcullis grants have all ended were revoked (or were being revoked) and are back:
    their assignment is marked present again and queued for removal, with an audit event.
    Returns the triples handled that way, so the caller does not record them as observed.

    An assignment whose provider-side access another current grant of the user stands for
    (an account assignment an Identity Center role or OU grant shares, as its driver's
    ``covered_elsewhere`` tells) is not back: the provider holds it for that grant."""
    if not keys:
        return set()
    users = {k[0] for k in keys}
    resources = {k[1] for k in keys}
    found = {
        (a.user_id, a.resource_id, a.access_level_id): a
        for a in Assignment.objects.filter(
            user_id__in=users, resource_id__in=resources
        ).select_related("user", "resource", "access_level")
    }
    ended: dict[tuple[int, int, int], Assignment] = {}
    for key in keys:
        assignment = found.get(key)
        if assignment is None or assignment.grants.filter(status__in=ACTIVE_STATUSES).exists():
            continue
        if not assignment.grants.exists():
            continue
        ended[key] = assignment
    covered = _covered_elsewhere(list(ended.values()))
    handled: set[tuple[int, int, int]] = set()
    for key, assignment in ended.items():
        if assignment.pk in covered:
            continue
        handled.add(key)
        with transaction.atomic():
            assignment.mark_found_in_aws(timezone.now())
            record_event(
                "grant.revoke_reapplied",
                target=assignment,
                details={
                    "user": assignment.user.email,
                    "resource_id": assignment.resource_id,
                    "resource": assignment.resource.name,
                    "access_level": assignment.access_level.name,
                    "note": "Sync found this access in AWS after its grants ended; removing it again.",
                },
            )
            plan_reconcile(assignment.pk)
    return handled


def _covered_elsewhere(assignments: list[Assignment]) -> set[int]:
    """The ids of these assignments whose provider-side access another current grant of the
    user stands for, asked of each resource type's driver (those that share nothing across
    resources have no ``covered_elsewhere``)."""
    by_type: dict[str, list[Assignment]] = {}
    for assignment in assignments:
        by_type.setdefault(assignment.resource.type, []).append(assignment)
    covered: set[int] = set()
    for resource_type, group in by_type.items():
        try:
            driver = drivers.get_driver(resource_type)
        except drivers.DriverError:
            continue
        ask = getattr(driver, "covered_elsewhere", None)
        if ask is not None:
            covered |= ask(group)
    return covered


def reconcile_assignment(assignment_id: int, *, force: bool = False) -> ReconcileResult:
    """Makes the provider hold the assignment while any grant of it is pending or active,
    and not hold it otherwise; moves the grants on accordingly. Safe to call any number of
    times from any number of workers: one holds the lease, the others return "busy", and
    the holder checks again for work that arrived while it was busy."""
    result = ReconcileResult("nothing")
    while True:
        with leases.hold(leases.name(LeaseKind.ASSIGNMENT, assignment_id), LEASE) as lease:
            if lease is None:
                # Whoever holds it may already have looked for new work: plan an attempt
                # shortly, so that this change is never dropped.
                now = timezone.now()
                Assignment.objects.filter(pk=assignment_id).filter(
                    Q(next_attempt_at__isnull=True)
                    | Q(next_attempt_at__gt=now + RESOURCE_BUSY_RETRY)
                ).update(next_attempt_at=now + RESOURCE_BUSY_RETRY)
                return ReconcileResult("busy") if result.action == "nothing" else result
            result = _reconcile_once(assignment_id, force=force)
            force = False
        assignment = Assignment.objects.filter(pk=assignment_id).first()
        if (
            assignment is None
            or result.action in ("failed", "waiting", "busy")
            or not _work_left(assignment)
        ):
            return result


def _reconcile_once(assignment_id: int, *, force: bool = False) -> ReconcileResult:
    assignment = Assignment.objects.select_related("user", "resource", "access_level").get(
        pk=assignment_id
    )
    grants = list(assignment.grants.filter(status__in=CURRENT_STATUSES))
    for grant in grants:  # the same rows as the assignment's: no query each for the events
        grant.user, grant.resource = assignment.user, assignment.resource
        grant.access_level = assignment.access_level
    wanted = any(g.status in ACTIVE_STATUSES for g in grants)
    pending = [g for g in grants if g.status == GrantStatus.PENDING]
    ending = [g for g in grants if g.status == GrantStatus.REVOKING]
    status = assignment.status
    if status == AssignmentStatus.REAPPLY:
        # A requested re-apply, or a retry after a failed apply over what AWS holds.
        force = True
    if wanted:
        if force and assignment.in_aws:
            pass  # apply again: the driver brings new parts (an OU's new accounts) in line
        elif not pending and not ending and assignment.in_aws:
            return _nothing(assignment)
        elif not pending and assignment.in_aws:
            # Only endings while another grant still needs the assignment: nothing to do
            # in AWS; the ending grants are done.
            _record_success(assignment, AssignmentStatus.APPLIED, None, [], ending, shared=True)
            return ReconcileResult("applied")
        operation = "apply"
    else:
        if status == AssignmentStatus.ABSENT and not ending:
            return _nothing(assignment)
        if status == AssignmentStatus.WAITING_FOR_USER and not assignment.driver_state:
            # Never applied (it waited for the user's subject): nothing to remove in AWS.
            _record_success(assignment, AssignmentStatus.ABSENT, None, [], ending)
            return ReconcileResult("removed")
        # An assignment whose applies failed, each saying it left nothing in AWS
        # (Assignment.mark_failed), is removed all the same: an earlier attempt may have
        # made a change and died before recording it, which a later one finds already made
        # and so cannot undo. Removing is idempotent: what is not there is success.
        operation = "remove"

    try:
        driver = drivers.get_driver(assignment.resource.type)
        lock_name = _lock_name(driver, assignment)
        with leases.hold(lock_name, LEASE) if lock_name else nullcontext(lock_name) as lock:
            if lock is None:
                # Another worker is changing this resource's shared document: try again
                # in a moment (the grant engine picks up due attempts every tick).
                Assignment.objects.filter(pk=assignment.pk).update(
                    next_attempt_at=timezone.now() + RESOURCE_BUSY_RETRY
                )
                return ReconcileResult("busy")
            outcome = (
                driver.apply(assignment) if operation == "apply" else driver.remove(assignment)
            )
    except drivers.SubjectUnknown as exc:
        # Active grants too: a re-apply after the user's subject was cleared waits as well.
        active = [g for g in grants if g.status == GrantStatus.ACTIVE]
        _record_waiting(assignment, pending + active, exc.message)
        return ReconcileResult("waiting", exc.message)
    except drivers.DriverError as exc:
        _record_failure(assignment, operation, pending + ending, exc)
        return ReconcileResult("failed", exc.message)
    except Exception as exc:  # a bug or an unexpected error must not leave grants silent
        logger.exception("Reconciling assignment %s failed", assignment_id)
        # As a DriverError: shown as readably as the provider's own errors.
        unexpected = drivers.DriverError(f"Unexpected error: {type(exc).__name__}: {exc}")
        _record_failure(assignment, operation, pending + ending, unexpected)
        return ReconcileResult("failed", unexpected.message)

    if operation == "apply":
        _record_success(assignment, AssignmentStatus.APPLIED, outcome, pending, ending)
        return ReconcileResult("applied")
    _record_success(assignment, AssignmentStatus.ABSENT, outcome, [], ending)
    return ReconcileResult("removed")


def _nothing(assignment: Assignment) -> ReconcileResult:
    """Nothing to do in the provider: a planned attempt (a retry, a claim) is moot."""
    assignment.unplan()
    return ReconcileResult("nothing")


def _lock_name(driver: Any, assignment: Assignment) -> str:
    """The lease under which changes that touch one shared thing in the provider (a trust
    policy, a user's account assignments) run one at a time, across processes; the
    assignment's own when the driver shares nothing."""
    key_of = getattr(driver, "lock_key", None)
    key = key_of(assignment) if key_of is not None else ""
    return leases.name(LeaseKind.LOCK, key) if key else ""


def _record_success(
    assignment: Assignment,
    status: AssignmentStatus,
    outcome: drivers.Outcome | None,
    applied: list[Grant],
    ended: list[Grant],
    *,
    shared: bool = False,
) -> None:
    now = timezone.now()
    driver_state = outcome.state if outcome is not None else None
    with transaction.atomic():
        # A plan made since this attempt read the assignment stays (compare and clear).
        assignment.unplan()
        if status == AssignmentStatus.ABSENT:
            assignment.mark_removed(now, driver_state)
        elif shared:
            assignment.mark_kept(now)
        else:
            assignment.mark_applied(now, driver_state)
        note = outcome.note if outcome is not None else ""
        # Written together at the end: the audit chain is locked for the last moment only.
        events: list[PendingEvent] = []
        waited: list[int] = []
        if status == AssignmentStatus.APPLIED:
            # Active grants that waited for a new subject (see _record_waiting) hold again.
            for grant in assignment.grants.filter(
                status=GrantStatus.ACTIVE,
                propagation_status=PropagationStatus.WAITING_FOR_SUBJECT,
            ):
                Grant.objects.filter(pk=grant.pk).update(
                    propagation_status=PropagationStatus.APPLIED, last_error="", updated_at=now
                )
                events.append(
                    PendingEvent.about("grant.applied", grant, grant_details(grant, note=note))
                )
                waited.append(grant.pk)
        if status == AssignmentStatus.APPLIED and outcome is not None and not applied:
            # Applied again what was in AWS (a requested re-apply, a retry): the driver may
            # have changed AWS (moved the holders to another role, deleted a former one),
            # which belongs in the history of each grant the assignment serves.
            for grant in (
                assignment.grants.filter(status=GrantStatus.ACTIVE)
                .exclude(pk__in=waited)
                .select_related("user", "resource", "access_level")
            ):
                events.append(
                    PendingEvent.about("grant.reapplied", grant, grant_details(grant, note=note))
                )
        for grant in applied:
            if Grant.objects.filter(pk=grant.pk, status=GrantStatus.PENDING).update(
                status=GrantStatus.ACTIVE,
                propagation_status=PropagationStatus.APPLIED,
                last_error="",
                updated_at=now,
            ):
                events.append(
                    PendingEvent.about("grant.applied", grant, grant_details(grant, note=note))
                )
        if outcome is not None and outcome.also_removed:
            events += _end_observed_with(assignment, outcome, now)
        for grant in ended:
            if Grant.objects.filter(pk=grant.pk, status=GrantStatus.REVOKING).update(
                status=GrantStatus.REVOKED,
                propagation_status=PropagationStatus.REMOVED,
                last_error="",
                updated_at=now,
            ):
                events.append(
                    PendingEvent.about(
                        "grant.removed",
                        grant,
                        grant_details(
                            grant,
                            note=(
                                "Another current grant still holds this access; nothing was "
                                "removed from AWS."
                                if shared
                                else note
                            ),
                        ),
                    )
                )
        record_events(events)


def _end_observed_with(
    assignment: Assignment, outcome: drivers.Outcome, now: datetime
) -> list[PendingEvent]:
    """Revokes the observed grants that stood for access the driver just removed with this
    assignment (see ``Outcome.also_removed``), inside the caller's transaction; returns
    their events. Only active observed grants of the same user: Portcullis's own grants
    keep what they need in the provider, and the driver leaves that in place."""
    grants = list(
        Grant.objects.filter(
            pk__in=outcome.also_removed,
            user_id=assignment.user_id,
            source=GrantSource.OBSERVED,
            status=GrantStatus.ACTIVE,
        ).select_related("user", "resource", "access_level")
    )
    events: list[PendingEvent] = []
    for grant in grants:
        if Grant.objects.filter(pk=grant.pk, status=GrantStatus.ACTIVE).update(
            status=GrantStatus.REVOKED,
            revoked_at=now,
            revoke_reason=REMOVED_WITH_REASON,
            propagation_status=PropagationStatus.REMOVED,
            updated_at=now,
        ):
            events.append(
                PendingEvent.about(
                    "grant.revoked",
                    grant,
                    grant_details(
                        grant,
                        reason=REMOVED_WITH_REASON,
                        assignment_id=assignment.pk,
                        note=outcome.note,
                    ),
                )
            )
    return events


def _record_waiting(assignment: Assignment, pending: list[Grant], message: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        assignment.mark_waiting(now, message)
        for grant in pending:
            if (
                Grant.objects.filter(
                    pk=grant.pk, status__in=[GrantStatus.PENDING, GrantStatus.ACTIVE]
                )
                .exclude(propagation_status=PropagationStatus.WAITING_FOR_SUBJECT)
                .update(
                    propagation_status=PropagationStatus.WAITING_FOR_SUBJECT,
                    last_error=message,
                    updated_at=now,
                )
            ):
                record_event(
                    "grant.waiting",
                    target=grant,
                    details=grant_details(grant, note=message),
                )


def alert_after() -> int:
    return settings.GRANT_ALERT_AFTER_ATTEMPTS


def _record_failure(
    assignment: Assignment, operation: str, grants: list[Grant], error: drivers.DriverError
) -> None:
    message = error.message
    now = timezone.now()
    attempts = assignment.attempts + 1
    wait = RETRY_BACKOFF[min(attempts, len(RETRY_BACKOFF)) - 1]
    alert = attempts >= alert_after() and assignment.alerted_at is None
    with transaction.atomic():
        assignment.mark_failed(
            now,
            operation=operation,
            error=message,
            retry_at=now + wait,
            alert=alert,
            left_nothing=error.left_nothing,
        )
        Grant.objects.filter(pk__in=[g.pk for g in grants]).update(
            propagation_status=PropagationStatus.FAILED, last_error=message[:4000], updated_at=now
        )
        for grant in grants:
            record_event(
                "grant.apply_failed" if operation == "apply" else "grant.remove_failed",
                target=grant,
                details=grant_details(
                    grant,
                    error=message,
                    attempt=attempts,
                    next_attempt_at=(now + wait).isoformat(),
                ),
            )
            if alert:
                record_event(
                    "grant.failing",
                    target=grant,
                    details=grant_details(
                        grant,
                        error=message,
                        attempts=attempts,
                        operation=operation,
                        note="Still retried; see the grant's last error.",
                    ),
                )


def failing_grants() -> Any:
    """Grants whose assignment raised the failing alert (for the admin list filter)."""
    # From the few alerted assignments (an index), not from every current grant: the
    # status is written as the ones it is not, which SQLite does not look up in an index.
    alerted = Assignment.objects.filter(alerted_at__isnull=False).values("pk")
    ended = [status for status in GrantStatus.values if status not in CURRENT_STATUSES]
    return Grant.objects.filter(assignment_id__in=alerted).exclude(status__in=ended)
