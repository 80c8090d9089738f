"""Access requests: the rule that judges them, submission, approval stages, decisions,
cancellation, extensions, pending deadlines and expiry warnings.

Every function that changes state writes its audit events in the same transaction; the
pages, the API and the admin all call these functions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.utils import timezone

from access import notifications, permissions
from access.choices import (
    Decision,
    ExtensionPolicy,
    GrantSource,
    GrantStatus,
    RequestKind,
    RequestStatus,
    ReviewerKind,
    StageMode,
)
from access.humanize import humanize
from access.models import (
    AccessLevel,
    AccessRequest,
    Actor,
    AnyUser,
    Approval,
    Grant,
    Owner,
    RequestRule,
    Resource,
    StageReviewer,
    User,
)
from access.services import grants as grant_service
from access.services.pending_requests import end_pending_request
from audit.services import record_event

# The durations a request form offers, cut at the rule's maximum.
DURATION_CHOICES = (
    timedelta(hours=1),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(days=1),
    timedelta(days=3),
    timedelta(days=7),
    timedelta(days=14),
    timedelta(days=30),
    timedelta(days=90),
)
DEFAULT_MAX = timedelta(days=7)
DEFAULT_RECOMMENDED = timedelta(hours=8)


class RequestInvalid(Exception):
    """A request (or a set of them) cannot be made; ``errors`` name each problem, keyed by
    the item's index ("" for problems of the whole submission)."""

    def __init__(self, errors: dict[Any, list[str]]) -> None:
        super().__init__("; ".join(m for ms in errors.values() for m in ms))
        self.errors = errors

    @property
    def messages(self) -> list[str]:
        return [m for ms in self.errors.values() for m in ms]


class DecisionError(Exception):
    """A decision cannot be recorded (already decided, own request, not a reviewer)."""


class CommentRequired(DecisionError):
    """A denial without the comment its rule requires: the input is what is wrong."""


# Rules ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    order: int
    reviewers: str
    mode: str

    def names_nobody(self, resource: Resource, requester: User | None) -> bool:
        """Whether its kind of reviewer names nobody for this resource and requester (no
        owners, no manager), so that the admins decide it (``reviewers_of``). Without a
        requester a manager stage is taken to name someone."""
        if self.reviewers == ReviewerKind.ADMINS:
            return False
        if self.reviewers == ReviewerKind.MANAGER and requester is None:
            return False
        return not named_by(self.reviewers, resource, requester)

    def describe(self, *, names_nobody: bool = False) -> str:
        """The stage in words. ``names_nobody``: its kind of reviewer names nobody for the
        resource and requester in question (no owners, no manager), so the admins decide it,
        as ``reviewers_of`` has it."""
        admins = "an admin" if self.mode == StageMode.ANY else "every one of the admins"
        if names_nobody and self.reviewers == ReviewerKind.OWNERS:
            return f"Stage {self.order}: the resource has no owners, so {admins} approves."
        if names_nobody and self.reviewers == ReviewerKind.MANAGER:
            return f"Stage {self.order}: the requester has no manager, so {admins} approves."
        if self.reviewers == ReviewerKind.ADMINS:
            return f"Stage {self.order}: {admins} approves."
        if self.reviewers == ReviewerKind.MANAGER:
            return f"Stage {self.order}: the requester's manager approves."
        if self.mode == StageMode.ALL:
            return f"Stage {self.order}: every one of the resource's owners approves."
        return f"Stage {self.order}: any one of the resource's owners approves."


@dataclass(frozen=True)
class EffectiveRule:
    """The rule that judges one requester's requests for one resource (a saved RequestRule,
    or the default when the resource has none)."""

    rule: RequestRule | None
    allow_requests: bool = True
    auto_approve: bool = False
    max_duration: timedelta | None = DEFAULT_MAX
    recommended_duration: timedelta | None = DEFAULT_RECOMMENDED
    allow_until_revoked: bool = False
    require_reason: bool = True
    require_ticket: bool = False
    require_deny_comment: bool = True
    extension_policy: str = ExtensionPolicy.SAME_AS_REQUEST
    allow_self_approval: bool = False
    stages: tuple[Stage, ...] = (Stage(1, ReviewerKind.OWNERS, StageMode.ANY),)
    name: str = "Default rule"

    @classmethod
    def of(cls, rule: RequestRule) -> EffectiveRule:
        return cls(
            rule=rule,
            allow_requests=rule.allow_requests,
            auto_approve=rule.auto_approve,
            max_duration=rule.max_duration,
            recommended_duration=rule.recommended_duration,
            allow_until_revoked=rule.allow_until_revoked,
            require_reason=rule.require_reason,
            require_ticket=rule.require_ticket,
            require_deny_comment=rule.require_deny_comment,
            extension_policy=rule.extension_policy,
            allow_self_approval=rule.allow_self_approval,
            stages=tuple(Stage(s.order, s.reviewers, s.mode) for s in rule.stages.all()),
            name=str(rule),
        )

    def duration_choices(self) -> list[timedelta | None]:
        """What the form offers: the standard durations up to the maximum, the recommended
        one, and "until revoked" where the rule allows it."""
        choices = [
            d for d in DURATION_CHOICES if self.max_duration is None or d <= self.max_duration
        ]
        for extra in (self.recommended_duration, self.max_duration):
            if extra is not None and extra not in choices:
                choices.append(extra)
        choices.sort()
        result: list[timedelta | None] = list(choices)
        if self.allow_until_revoked:
            result.append(None)
        return result

    def missing(self, resource: Resource, *, reason: str, ticket: str) -> list[str]:
        """What a request (or an extension) for ``resource`` lacks that this rule requires:
        a reason, a ticket reference."""
        problems = []
        if self.require_reason and not (reason or "").strip():
            problems.append(f"Give a reason: {resource.name}'s rule requires one.")
        if self.require_ticket and not (ticket or "").strip():
            problems.append(f"Give a ticket reference: {resource.name}'s rule requires one.")
        return problems

    @property
    def default_duration(self) -> timedelta | None:
        if self.recommended_duration is not None:
            return self.recommended_duration
        return self.max_duration

    def describe(
        self, resource: Resource | None = None, requester: User | None = None
    ) -> list[str]:
        """The rule in plain words. Given the resource and the requester, a stage whose kind
        of reviewer names nobody for them says that the admins decide it instead."""
        if not self.allow_requests:
            return ["Access to this resource cannot be requested."]
        lines = []
        if self.auto_approve:
            lines.append("Requests are approved automatically.")
        else:
            lines.extend(
                stage.describe(
                    names_nobody=resource is not None and stage.names_nobody(resource, requester)
                )
                for stage in self.stages
            )
        if self.max_duration is not None:
            lines.append(f"Access lasts at most {humanize(self.max_duration)}.")
        if self.allow_until_revoked:
            lines.append("Access until revoked may be requested.")
        needs = [
            n
            for n, on in (
                ("a reason", self.require_reason),
                ("a ticket reference", self.require_ticket),
            )
            if on
        ]
        if needs:
            lines.append("A request needs " + " and ".join(needs) + ".")
        if not self.require_deny_comment and not self.auto_approve:
            lines.append("A reviewer may deny without saying why.")
        lines.append(
            {
                ExtensionPolicy.NOT_ALLOWED: "Access cannot be extended.",
                ExtensionPolicy.SAME_AS_REQUEST: "Extensions are approved like a new request.",
                ExtensionPolicy.AUTO_APPROVE: "Extensions up to the maximum are approved automatically.",
            }[ExtensionPolicy(self.extension_policy)]
        )
        if self.allow_self_approval:
            lines.append("A requester who is also a reviewer may approve their own request.")
        return lines

    def snapshot(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule.pk if self.rule else None,
            "name": self.name,
            "auto_approve": self.auto_approve,
            "allow_self_approval": self.allow_self_approval,
            "require_deny_comment": self.require_deny_comment,
            "extension_policy": self.extension_policy,
            "max_duration_seconds": int(self.max_duration.total_seconds())
            if self.max_duration
            else None,
            "stages": [
                {"order": s.order, "reviewers": s.reviewers, "mode": s.mode} for s in self.stages
            ],
        }


def rule_applies_to(rule: RequestRule, group_ids: Collection[int]) -> bool:
    """Whether a rule is for a requester in these groups: it names one of them, or none."""
    return rule.requester_group_id is None or rule.requester_group_id in group_ids


def applicable_rule(rules: Iterable[RequestRule], group_ids: Collection[int]) -> RequestRule | None:
    """Of one resource's rules, the one that judges a requester in these groups: the
    highest priority among those that apply to them, the oldest on a tie (an unsaved rule
    counts as the newest). ``rule_for`` and the check of rule edits both choose with it."""
    matching = [rule for rule in rules if rule_applies_to(rule, group_ids)]
    return min(matching, key=lambda r: (-r.priority, r.pk is None, r.pk or 0), default=None)


def rule_for(resource: Resource, requester: User) -> EffectiveRule:
    """The highest-priority rule of the resource that applies to this requester: rules for a
    group they are in, or for everyone. With no rule at all, the default: owners approve,
    at most 7 days, a reason required. One query (none for a resource fetched with
    ``with_rule_flag`` that has no rule), and one more for the stages of a rule found."""
    if getattr(resource, "has_request_rules", True) is False:
        return EffectiveRule(rule=None)
    for_them = Q(requester_group__isnull=True)
    if requester.pk:
        for_them |= Q(requester_group__members=requester)
    rules = list(resource.request_rules.filter(for_them))
    # Every rule fetched applies to them: their groups among the rules' are those named.
    rule = applicable_rule(
        rules, {r.requester_group_id for r in rules if r.requester_group_id is not None}
    )
    return EffectiveRule.of(rule) if rule is not None else EffectiveRule(rule=None)


def with_rule_flag(resources: Any) -> Any:
    """``resources`` annotated with whether each has a request rule, which ``rule_for``
    reads to spare the query of a resource with none."""
    return resources.annotate(
        has_request_rules=Exists(RequestRule.objects.filter(resource=OuterRef("pk")))
    )


# Reviewers ------------------------------------------------------------------------------------
def admins() -> list[int]:
    return list(
        User.objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name=permissions.ADMIN_ROLE))
        .values_list("pk", flat=True)
        .distinct()
    )


def _named_by(kind: str, request: AccessRequest, emails: dict[int, str] | None = None) -> set[int]:
    return named_by(kind, request.resource, request.user, emails)


def named_by(
    kind: str, resource: Resource, user: User | None, emails: dict[int, str] | None = None
) -> set[int]:
    """The active users a stage's kind of reviewer names today for a request of ``user``
    for ``resource``: the resource's owners (directly or through a group), the user's
    manager, or the admins. ``emails``, if given, receives the addresses of the owners or
    the manager named."""
    ids: set[int] = set()
    found: dict[int, str] = {}
    if kind == ReviewerKind.OWNERS:
        found = dict(
            User.objects.filter(
                Q(ownerships__resource=resource) | Q(member_of__ownerships__resource=resource),
                is_active=True,
            ).values_list("pk", "email")
        )
        ids |= set(found)
    elif kind == ReviewerKind.MANAGER:
        manager_id = user.manager_id if user is not None else None
        manager = User.objects.filter(pk=manager_id, is_active=True).first() if manager_id else None
        if manager is not None:
            ids.add(manager.pk)
            found[manager.pk] = manager.email
    else:
        ids |= set(admins())
    # Owners that are groups have no user_id: the stubs type the column's values as int.
    ids.discard(None)  # type: ignore[arg-type]
    if emails is not None:
        emails.update(found)
    return ids


def reviewers_of(
    stage: dict[str, Any] | Stage, request: AccessRequest, emails: dict[int, str] | None = None
) -> list[int]:
    """Who may decide a stage, fixed when the stage starts. A stage with nobody to ask
    (no owners, no manager) goes to the admins, so no request is stuck. ``emails``: as
    ``_named_by`` fills it."""
    kind = stage.reviewers if isinstance(stage, Stage) else stage["reviewers"]
    ids = _named_by(kind, request, emails)
    if not ids:
        ids = set(admins())
    return sorted(ids)


def still_qualified(stage: dict[str, Any], request: AccessRequest) -> set[int]:
    """Of the people who may decide a stage, fixed when it started, those who still may:
    the reviewers its kind names today (an owner removed since, or a manager who no longer
    is the requester's, drops out), and the admins, who may decide any request. Nobody
    joins by this: who became an owner or the manager since is not a reviewer of it."""
    return set(request.reviewer_ids) & (_named_by(stage["reviewers"], request) | set(admins()))


def _still_reviews(
    user: User, stage: dict[str, Any], request: AccessRequest, *, owns: bool | None = None
) -> bool:
    """Whether ``user``, a reviewer of the stage when it started, still may decide it: as
    ``still_qualified`` says, asking only about them. ``owns``: whether they own the
    resource today (directly or through a group, and active), when the caller read it."""
    if permissions.is_admin(user):
        return True
    if owns is not None and stage["reviewers"] == ReviewerKind.OWNERS:
        return owns
    return user.pk in _named_by(stage["reviewers"], request)


def _self_ids(request: AccessRequest) -> set[int]:
    return {request.user_id, request.requested_by_id}


def _stage_complete(request: AccessRequest, stage: dict[str, Any]) -> bool:
    approved = set(
        request.approvals.filter(
            stage=request.current_stage, decision=Decision.APPROVED
        ).values_list("reviewer_id", flat=True)
    )
    if stage["mode"] == StageMode.ANY:
        return bool(approved)
    # Those who no longer qualify (an owner removed since) cannot approve, so they are
    # not waited for either.
    needed = still_qualified(stage, request)
    if not request.rule_snapshot.get("allow_self_approval"):
        # The requester cannot approve, so "all" means all the others; when they were the
        # only reviewer, the stage's reviewers are the admins instead, and all of them decide.
        needed -= _self_ids(request)
    return bool(approved) and needed <= approved


def _start_stage(request: AccessRequest, order: int) -> tuple[list[int], dict[int, str]]:
    """Starts the stage of a saved request: fixes its reviewers, one insert. Returns their
    ids and the addresses of those it read (for the audit event and the mail to them)."""
    stage = request.stages[order - 1]
    request.current_stage = order
    emails: dict[int, str] = {}
    reviewers = reviewers_of(stage, request, emails)
    if not request.rule_snapshot.get("allow_self_approval") and not (
        set(reviewers) - _self_ids(request)
    ):
        # Only the requester could decide, and they may not: the admins decide.
        reviewers = sorted(set(admins()) - _self_ids(request)) or reviewers
    StageReviewer.objects.bulk_create(
        StageReviewer(request=request, stage=order, user_id=pk) for pk in reviewers
    )
    return reviewers, emails


# Submitting -----------------------------------------------------------------------------------
@dataclass
class RequestItem:
    """One line of a submission: a resource, an access level and how long."""

    resource_id: Any
    access_level_id: Any
    duration: timedelta | None
    resource: Resource | None = field(default=None, repr=False)
    access_level: AccessLevel | None = field(default=None, repr=False)
    rule: EffectiveRule | None = field(default=None, repr=False)


ON_BEHALF_REFUSED = (
    "You cannot ask for access to {resource} for this person: ask for yourself, for your "
    "reports, or (as an admin or one of the resource's owners) for any active user."
)


def unknown_user(pk: int) -> User:
    """Stands for a user id that matches nobody, so that asking on its behalf is refused
    with the message any other refused person gets."""
    return User(pk=pk, is_active=False)


def pending_timeout() -> timedelta:
    return timedelta(hours=settings.ACCESS_REQUEST_PENDING_HOURS)


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def validate_items(
    *, requested_by: User, user: User, items: Sequence[RequestItem], reason: str, ticket: str
) -> dict[Any, list[str]]:
    """Every problem with a submission, per item; fills each item's resource, level and
    rule. Nothing is written."""
    errors: dict[Any, list[str]] = {}

    def add(key: Any, message: str) -> None:
        errors.setdefault(key, []).append(message)

    if not items:
        add("", "Choose at least one resource.")
    on_behalf = user.pk != requested_by.pk
    if not on_behalf and not user.is_active:
        add("", f"{user.email} is deactivated and cannot receive access.")
    seen: set[tuple[int, int]] = set()
    for index, item in enumerate(items):
        resource_pk = _as_int(item.resource_id)
        resource = (
            with_rule_flag(Resource.objects.visible_to(requested_by))
            .select_related("app")
            .filter(pk=resource_pk)
            .first()
            if resource_pk is not None
            else None
        )
        if resource is None:
            add(index, f"Resource {item.resource_id!s} does not exist.")
            continue
        item.resource = resource
        if resource.deleted_at is not None:
            add(index, f"{resource.name} no longer exists in AWS and cannot be requested.")
            continue
        if on_behalf and not (
            user.is_active and permissions.can_request_for(requested_by, user, resource)
        ):
            # One message whether the person may not be asked for, is deactivated or does
            # not exist (the API passes an unknown id as an inactive, unsaved user): the
            # answer tells nobody who exists or who left.
            add(index, ON_BEHALF_REFUSED.format(resource=resource.name))
            continue
        if refusal := grant_service.not_requestable(resource):
            add(index, refusal)
            continue
        level_pk = _as_int(item.access_level_id)
        # With the pending request this user already has for it, if any; looked up among
        # the resource's own levels: another resource's is not one of them.
        pending = AccessRequest.objects.filter(
            user=user,
            resource=resource,
            access_level=OuterRef("pk"),
            status=RequestStatus.PENDING,
            kind=RequestKind.NEW,
        )
        level = (
            resource.access_levels.filter(pk=level_pk)
            .annotate(pending_request_id=Subquery(pending.values("pk")[:1]))
            .first()
            if level_pk is not None
            else None
        )
        if level is None:
            add(index, f"Choose one of {resource.name}'s access levels.")
            continue
        if level.deleted_at is not None:
            add(index, f"The access level {level.name} of {resource.name} no longer exists.")
            continue
        if refusal := grant_service.not_requestable(resource, level):
            add(index, refusal)
            continue
        item.access_level = level
        if (resource.pk, level.pk) in seen:
            add(index, f"{resource.name} ({level.name}) is asked for twice.")
            continue
        seen.add((resource.pk, level.pk))
        rule = rule_for(resource, user)
        item.rule = rule
        if not rule.allow_requests:
            add(index, f"Access to {resource.name} cannot be requested.")
            continue
        if item.duration is None:
            if not rule.allow_until_revoked:
                add(
                    index,
                    f"Access to {resource.name} must have an end: choose a duration of at most "
                    f"{humanize(rule.max_duration)}.",
                )
        elif item.duration <= timedelta(0):
            add(index, "The duration must be positive.")
        elif rule.max_duration is not None and item.duration > rule.max_duration:
            add(
                index,
                f"Access to {resource.name} lasts at most {humanize(rule.max_duration)}; "
                f"you asked for {humanize(item.duration)}.",
            )
        for problem in rule.missing(resource, reason=reason, ticket=ticket):
            add(index, problem)
        if level.pending_request_id is not None:
            add(
                index,
                f"{user.email} already has a pending request (#{level.pending_request_id}) "
                f"for {resource.name} ({level.name}).",
            )
    return errors


def submit_requests(
    *,
    requested_by: User,
    items: Sequence[RequestItem],
    reason: str = "",
    ticket: str = "",
    user: User | None = None,
) -> list[AccessRequest]:
    """Creates one request per item, each judged by its own rule, all or none: any problem
    raises RequestInvalid and nothing is written. Auto-approved requests are granted."""
    user = user or requested_by
    reason, ticket = (reason or "").strip(), (ticket or "").strip()
    errors = validate_items(
        requested_by=requested_by, user=user, items=items, reason=reason, ticket=ticket
    )
    if errors:
        raise RequestInvalid(errors)
    created: list[AccessRequest] = []
    with transaction.atomic():
        for item in items:
            assert item.resource and item.access_level and item.rule
            created.append(
                _open(
                    requested_by=requested_by,
                    user=user,
                    resource=item.resource,
                    level=item.access_level,
                    rule=item.rule,
                    duration=item.duration,
                    reason=reason,
                    ticket=ticket,
                    kind=RequestKind.NEW,
                    grant=None,
                )
            )
    return created


def _open(
    *,
    requested_by: User,
    user: User,
    resource: Resource,
    level: AccessLevel,
    rule: EffectiveRule,
    duration: timedelta | None,
    reason: str,
    ticket: str,
    kind: str,
    grant: Grant | None,
    auto: bool | None = None,
) -> AccessRequest:
    now = timezone.now()
    request = AccessRequest(
        requested_by=requested_by,
        user=user,
        resource=resource,
        access_level=level,
        kind=kind,
        grant=grant,
        rule=rule.rule,
        rule_snapshot=rule.snapshot(),
        duration=duration,
        reason=reason,
        ticket=ticket,
        created_at=now,
        pending_until=now + pending_timeout(),
    )
    auto = rule.auto_approve if auto is None else auto
    request.save()
    reviewers, emails = ([], {}) if auto else _start_stage(request, 1)
    record_event(
        "request.extension_requested" if kind == RequestKind.EXTENSION else "request.created",
        actor=requested_by,
        target=request,
        details=_details(request),
    )
    if auto:
        try:
            _approve(request, actor=requested_by, note="approved automatically by the rule")
        except grant_service.GrantError as exc:
            raise RequestInvalid({"": [str(exc)]}) from exc
    else:
        notifications.stage_started(request, reviewers=reviewers, emails=emails)
    return request


def _details(request: AccessRequest, **extra: Any) -> dict[str, Any]:
    return {
        "user": request.user.email,
        "requested_by": request.requested_by.email,
        "resource_id": request.resource_id,
        "resource": request.resource.name,
        "access_level": request.access_level.name,
        "kind": request.kind,
        "duration": humanize(request.duration),
        "reason": request.reason,
        "ticket": request.ticket,
        "rule": request.rule_snapshot.get("name"),
        "stage": request.current_stage,
        **extra,
    }


# Deciding ------------------------------------------------------------------------------------
def can_decide(user: AnyUser, request: AccessRequest) -> bool:
    """Whether ``user`` may approve or deny the request now (as a reviewer of its current
    stage or as an admin overriding), leaving self-approval to ``decide``."""
    if not request.is_pending or not permissions._active(user):
        return False
    if permissions.is_admin(user):
        return True
    stages = request.stages
    if not stages or user.pk not in request.reviewer_ids:
        return False
    return _still_reviews(user, stages[request.current_stage - 1], request)


def decide(
    request: AccessRequest, *, reviewer: User, approve: bool, comment: str = ""
) -> AccessRequest:
    """Records one reviewer's decision on the current stage. A denial ends the request; an
    approval completes the stage when its mode is satisfied, then starts the next stage or
    grants the access. Admins outside the stage's reviewers override: their decision ends
    the request either way. Concurrent decisions are serialised on the request row, so
    two approvers acting at once yield one decision and one grant."""
    comment = (comment or "").strip()
    with transaction.atomic():
        # With whether this reviewer already decided its current stage, reviews it and
        # owns its resource today: decisions on the request, and so the start of its next
        # stage with its reviewers, wait for this row lock, so none of it moves meanwhile.
        decided_already = Approval.objects.filter(
            request=OuterRef("pk"), stage=OuterRef("current_stage"), reviewer=reviewer.pk
        )
        reviews = StageReviewer.objects.filter(
            request=OuterRef("pk"), stage=OuterRef("current_stage"), user=reviewer.pk
        )
        owns = Owner.objects.filter(
            Q(user=reviewer.pk, user__is_active=True)
            | Q(group__members=reviewer.pk, group__members__is_active=True),
            resource=OuterRef("resource_id"),
        )
        locked = (
            AccessRequest.objects.select_for_update(of=("self",))
            .select_related("user", "requested_by", "resource", "access_level", "grant")
            .annotate(
                decided_already=Exists(decided_already),
                is_reviewer=Exists(reviews),
                reviewer_owns=Exists(owns),
            )
            .get(pk=request.pk)
        )
        if locked.status != RequestStatus.PENDING:
            raise DecisionError(f"This request was already {locked.get_status_display().lower()}.")
        is_self = reviewer.pk in _self_ids(locked)
        if is_self and not locked.rule_snapshot.get("allow_self_approval"):
            raise DecisionError(
                "You cannot decide your own request; another reviewer must. "
                "Cancel it instead if you no longer need it."
            )
        is_reviewer: bool = locked.is_reviewer  # type: ignore[attr-defined]  # annotated above
        is_admin = permissions.is_admin(reviewer)
        if is_reviewer and not _still_reviews(
            reviewer,
            locked.stages[locked.current_stage - 1],
            locked,
            owns=locked.reviewer_owns,  # type: ignore[attr-defined]  # annotated above
        ):
            # Reviewers are fixed when a stage starts; one who has since stopped being an
            # owner or the requester's manager (or an admin) no longer decides.
            raise DecisionError(
                "You no longer review this request: its reviewers were fixed when its stage "
                f"started, and you are now {_no_longer(locked)}. "
                "Its other reviewers or an admin decide."
            )
        if not (is_reviewer or is_admin):
            raise PermissionDenied("You are not a reviewer of this request's current stage.")
        if is_self and not is_reviewer:
            # A rule allowing self-approval lets a requester who reviews this stage decide;
            # it never lets an admin override their own request.
            raise DecisionError(
                "You cannot override your own request; a reviewer of its stage must decide."
            )
        stage = locked.current_stage
        override = not is_reviewer
        if locked.decided_already:  # type: ignore[attr-defined]  # annotated above
            raise DecisionError("You already decided this stage of the request.")
        if not approve and not comment and denial_needs_comment(locked):
            raise CommentRequired(DENY_COMMENT_NEEDED)
        approval = Approval.objects.create(
            request=locked,
            stage=stage,
            reviewer=reviewer,
            decision=Decision.APPROVED if approve else Decision.DENIED,
            comment=comment,
            is_override=override,
            is_self_approval=is_self,
        )
        record_event(
            "request.approved" if approve else "request.denied",
            actor=reviewer,
            target=locked,
            details=_details(
                locked,
                stage=stage,
                comment=comment,
                override=override,
                self_approval=is_self,
            ),
        )
        if not approve:
            _finish(locked, RequestStatus.DENIED)
            notifications.decided(locked, last=approval)
            return locked
        stages = locked.stages
        # This approval completes a stage that any one reviewer decides.
        if (
            override
            or stages[stage - 1]["mode"] == StageMode.ANY
            or _stage_complete(locked, stages[stage - 1])
        ):
            if not override and stage < len(stages):
                reviewers, emails = _start_stage(locked, stage + 1)
                locked.save(update_fields=["current_stage", "updated_at"])
                record_event(
                    "request.stage_started",
                    target=locked,
                    details=_details(locked, reviewers=_emails(reviewers)),
                )
                notifications.stage_started(locked, reviewers=reviewers, emails=emails)
            else:
                try:
                    _approve(locked, actor=reviewer, approval=approval)
                except grant_service.GrantError as exc:
                    # Rolls the decision back with it: nothing is half-written.
                    raise DecisionError(f"The access cannot be granted: {exc}") from exc
        return locked


DENY_COMMENT_NEEDED = (
    "Say why you deny the request: the requester sees your comment and the audit log keeps it."
)


def denial_needs_comment(request: AccessRequest) -> bool:
    return request.denial_needs_comment


def _no_longer(request: AccessRequest) -> str:
    """What a former reviewer of the current stage is no longer, in words."""
    kind = request.stages[request.current_stage - 1]["reviewers"]
    if kind == ReviewerKind.OWNERS:
        return f"neither an owner of {request.resource.name} nor an admin"
    if kind == ReviewerKind.MANAGER:
        return f"neither {request.user.email}'s manager nor an admin"
    return "no longer an admin"


def _emails(ids: list[int]) -> list[str]:
    return list(User.objects.filter(pk__in=ids).order_by("email").values_list("email", flat=True))


def _finish(request: AccessRequest, status: str) -> None:
    request.status = status
    request.decided_at = timezone.now()
    request.save(update_fields=["status", "decided_at", "auto_approved", "updated_at"])


def _approve(
    request: AccessRequest, *, actor: Actor, note: str = "", approval: Approval | None = None
) -> None:
    """The request is approved (by ``approval``, the last decision, when the caller has it):
    grant the access (or extend the grant)."""
    request.auto_approved = bool(note)
    _finish(request, RequestStatus.APPROVED)
    if request.auto_approved:
        record_event(
            "request.approved",
            actor=actor,
            target=request,
            details=_details(request, automatic=True, note=note),
        )
    if request.kind == RequestKind.EXTENSION:
        assert request.grant is not None and request.duration is not None
        seconds = request.rule_snapshot.get("max_duration_seconds")
        # Time passed while the extension waited, and another extension may have been
        # approved meanwhile: never past the rule's maximum from now (capped on the locked
        # grant row).
        grant_service.extend_grant(
            request.grant,
            by=request.duration,
            actor=actor,
            request=request,
            maximum=timedelta(seconds=seconds) if seconds is not None else None,
        )
    else:
        expires = timezone.now() + request.duration if request.duration is not None else None
        grant_service.create_grant(
            user=request.user,
            resource=request.resource,
            access_level=request.access_level,
            expires_at=expires,
            source=GrantSource.REQUEST,
            actor=actor,
            request=request,
            reason=request.reason,
        )
    notifications.decided(request, last=approval)


def cancel_request(request: AccessRequest, *, actor: User) -> AccessRequest:
    if not permissions.can_cancel_request(actor, request):
        raise PermissionDenied("Only the requester can cancel this request.")
    with transaction.atomic():
        if not end_pending_request(request, actor=actor, details=_details(request)):
            raise DecisionError("Only a pending request can be canceled.")
    return request


def expire_pending_requests(now: datetime | None = None) -> int:
    """Pending requests past their deadline expire (no decision came)."""
    now = now or timezone.now()
    expired = 0
    for pk in AccessRequest.objects.filter(
        status=RequestStatus.PENDING, pending_until__lte=now
    ).values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            request = AccessRequest.objects.select_related(
                "user", "requested_by", "resource", "access_level"
            ).get(pk=pk)
            if end_pending_request(
                request, status=RequestStatus.EXPIRED, details=_details(request), now=now
            ):
                notifications.decided(request)
                expired += 1
    return expired


# Extensions ----------------------------------------------------------------------------------
def extended_length(grant: Grant, by: timedelta) -> timedelta:
    """How long from now the access would last once extended ``by``."""
    assert grant.expires_at is not None  # only a grant that ends is extended
    now = timezone.now()
    return max(grant.expires_at, now) + by - now


def max_extension(grant: Grant, maximum: timedelta) -> timedelta:
    assert grant.expires_at is not None  # only a grant that ends is extended
    left = max(grant.expires_at - timezone.now(), timedelta(0))
    return max(maximum - left, timedelta(0))


def extension_durations(grant: Grant, rule: EffectiveRule) -> list[timedelta]:
    """What an extension of the grant may ask for: the rule's durations that still fit
    under its maximum, which counts from now with the time left included."""
    durations = [d for d in rule.duration_choices() if d is not None]
    if rule.max_duration is None:
        return durations
    room = max_extension(grant, rule.max_duration)
    return [d for d in durations if d <= room]


def _whole_minutes(duration: timedelta) -> timedelta:
    """A computed allowance in words is at most what it allows: down to the minute."""
    return timedelta(minutes=int(duration.total_seconds() // 60))


def _left_text(grant: Grant) -> str:
    assert grant.expires_at is not None  # only a grant that ends is extended
    left = grant.expires_at - timezone.now()
    if left <= timedelta(0):
        return "none is"
    return f"{humanize(timedelta(minutes=max(1, round(left.total_seconds() / 60))))} is"


def request_extension(
    grant: Grant, *, requested_by: User, duration: timedelta, reason: str = "", ticket: str = ""
) -> AccessRequest:
    """Asks to extend a grant by ``duration``, judged by the extension rule of the resource:
    refused, approved automatically up to the maximum, or approved like a new request."""
    if not permissions.can_extend_grant(requested_by, grant):
        raise PermissionDenied("You cannot extend this access.")
    refusal = grant.extension_refusal()
    if refusal:
        raise RequestInvalid({"": [refusal]})
    rule = rule_for(grant.resource, grant.user)
    problems: list[str] = []
    if not rule.allow_requests or rule.extension_policy == ExtensionPolicy.NOT_ALLOWED:
        problems.append(f"Access to {grant.resource.name} cannot be extended.")
    if duration <= timedelta(0):
        problems.append("The duration must be positive.")
    elif rule.max_duration is not None and extended_length(grant, duration) > rule.max_duration:
        problems.append(
            f"Access to {grant.resource.name} lasts at most {humanize(rule.max_duration)} "
            f"from now; {_left_text(grant)} left, so it can be extended by at most "
            f"{humanize(_whole_minutes(max_extension(grant, rule.max_duration)))}."
        )
    problems += rule.missing(grant.resource, reason=reason, ticket=ticket)
    if AccessRequest.objects.filter(
        grant=grant, kind=RequestKind.EXTENSION, status=RequestStatus.PENDING
    ).exists():
        problems.append("An extension of this access is already pending.")
    if problems:
        raise RequestInvalid({"": problems})
    with transaction.atomic():
        return _open(
            requested_by=requested_by,
            user=grant.user,
            resource=grant.resource,
            level=grant.access_level,
            rule=rule,
            duration=duration,
            reason=(reason or "").strip(),
            ticket=(ticket or "").strip(),
            kind=RequestKind.EXTENSION,
            grant=grant,
            auto=rule.auto_approve or rule.extension_policy == ExtensionPolicy.AUTO_APPROVE,
        )


# Expiry warnings -----------------------------------------------------------------------------
def send_expiry_warnings(now: datetime | None = None) -> int:
    """For grants longer than 24 hours: a warning a day and an hour before expiry, each
    sent once (a claim by conditional update), with a link to extend."""
    now = now or timezone.now()
    sent = 0
    # Only grants longer than a day are warned; filtered in the query so that many short
    # grants never crowd the long ones out of a batch.
    base = (
        Grant.objects.filter(
            status=GrantStatus.ACTIVE, expires_at__isnull=False, expires_at__gt=now
        )
        .exclude(source=GrantSource.OBSERVED)
        .filter(expires_at__gt=F("starts_at") + timedelta(days=1))
    )
    day = timedelta(days=1)
    for field_name, window in (("warned_day_at", day), ("warned_hour_at", timedelta(hours=1))):
        candidates = (
            base.filter(**{f"{field_name}__isnull": True}, expires_at__lte=now + window)
            .select_related("user", "resource", "access_level")
            .order_by("expires_at")
        )
        for grant in candidates[:500]:
            assert grant.expires_at is not None  # filtered on above
            if field_name == "warned_day_at" and grant.expires_at - now <= timedelta(hours=1):
                # Too late for the day warning: the hour warning says it.
                Grant.objects.filter(pk=grant.pk).update(warned_day_at=now)
                continue
            if Grant.objects.filter(pk=grant.pk, **{f"{field_name}__isnull": True}).update(
                **{field_name: now}
            ):
                notifications.expiry_warning(grant, within=window)
                sent += 1
    return sent
