"""Inventory (apps, resources, access levels, owners, request rules), users, groups and grants."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from access.choices import (
    ASSIGNMENT_IN_AWS,
    AssignmentStatus,
    Decision,
    ExtensionPolicy,
    GrantSource,
    GrantStatus,
    GroupSource,
    PropagationStatus,
    Provider,
    RequestKind,
    RequestStatus,
    ResourceType,
    ReviewerKind,
    RiskSensitivity,
    StageMode,
)
from access.querysets import (
    AccessRequestQuerySet,
    AssignmentQuerySet,
    GrantQuerySet,
    ResourceQuerySet,
)

EXPIRY_IN_THE_PAST = "The expiry must be in the future."


def in_the_future(moment: datetime) -> bool:
    return moment > timezone.now()


class User(AbstractUser):
    """A portal user. ``manager`` approves and reviews their reports' access."""

    email = models.EmailField("email address", unique=True)
    manager = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reports"
    )
    title = models.CharField(max_length=150, blank=True)
    department = models.CharField(max_length=150, blank=True)
    oidc_subject = models.CharField(
        "OIDC subject",
        max_length=255,
        blank=True,
        db_index=True,
        help_text="The user's subject at the identity provider AWS trusts; learnt at their "
        "first sign-in through it. Trust-policy grants name it.",
    )
    oidc_issuer = models.CharField(
        "OIDC issuer",
        max_length=500,
        blank=True,
        help_text="The issuer that gave the OIDC subject. The subject counts only while AWS "
        "trusts this issuer; changing the issuer in the AWS settings clears it.",
    )

    # Kept on the instances a CSV import reads (access/resources.py), for its own checks.
    _import_before: dict[str, Any] | None
    _import_old_username: str
    _import_old_roles: set[str]
    _import_manager_email: str | None
    _import_roles: list[str] | None

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined]  # not in django-stubs
        swappable = "AUTH_USER_MODEL"

    def __str__(self) -> str:
        full = self.get_full_name()
        return f"{full} <{self.email}>" if full else self.email or self.username

    def clean(self) -> None:
        super().clean()
        self.email = self.email.strip().lower()
        if self.manager_id and self.manager_id == self.pk:
            raise ValidationError({"manager": "A user cannot be their own manager."})


# Who did something, in services' signatures: a person, or None for Portcullis itself (the
# engine, a sync, a schedule).
type Actor = User | None
# Whom a permission check is about: request.user (a person or anonymous), or an actor.
type AnyUser = User | AnonymousUser | None


class UserGroup(models.Model):
    """A group of people (a team), which can own resources; its admins review its members."""

    name = models.CharField(max_length=150, unique=True)
    description = models.TextField(blank=True)
    members = models.ManyToManyField(User, blank=True, related_name="member_of")
    admins = models.ManyToManyField(User, blank=True, related_name="admin_of")
    source = models.CharField(max_length=16, choices=GroupSource.choices, default=GroupSource.LOCAL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "group"

    def __str__(self) -> str:
        return self.name


class App(models.Model):
    """A connected provider tenant: for AWS, one organization (its settings live in aws_integration)."""

    name = models.CharField(max_length=150, unique=True)
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.AWS)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Resource(models.Model):
    """Something in AWS that access can be requested to, as last seen by sync."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="resources")
    type = models.CharField(max_length=32, choices=ResourceType.choices)
    remote_id = models.CharField(
        max_length=512, help_text="The id in AWS (account id, group id, ...)."
    )
    arn = models.CharField("ARN", max_length=2048, blank=True)
    name = models.CharField(max_length=255)
    account_id = models.CharField(max_length=12, blank=True, db_index=True)
    region = models.CharField(max_length=32, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    tags = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    risk_sensitivity = models.CharField(
        max_length=16, choices=RiskSensitivity.choices, default=RiskSensitivity.MEDIUM
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = ResourceQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["app", "type", "remote_id"], name="resource_unique_remote_id"
            )
        ]
        indexes = [
            models.Index(fields=["type", "name"], name="resource_type_name_idx"),
            models.Index(fields=["name"], name="resource_name_idx"),
            models.Index(fields=["deleted_at"], name="resource_deleted_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_type_display()})"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def not_requestable_reason(self) -> str:
        """Why the provider will not grant access to this resource (sync sets it, e.g. an IAM
        role not tagged requestable); "" when it will."""
        reason = self.metadata.get("not_requestable") if isinstance(self.metadata, dict) else ""
        return str(reason or "")


class AccessLevel(models.Model):
    """One kind of access to a resource: a permission set, "member", a database user, an EKS policy."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="access_levels")
    remote_id = models.CharField(max_length=512)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["resource", "remote_id"], name="access_level_unique_remote_id"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def not_requestable_reason(self) -> str:
        """Why the provider will not grant this level (sync sets it, e.g. a permission set
        not tagged requestable, offered as a level of an account or OU); "" when it will."""
        reason = self.metadata.get("not_requestable") if isinstance(self.metadata, dict) else ""
        return str(reason or "")


class Owner(models.Model):
    """A user or a group owning a resource: they approve its requests and review its access."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="owners")
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="ownerships"
    )
    group = models.ForeignKey(
        UserGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="ownerships"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(group__isnull=True))
                | (Q(user__isnull=True) & Q(group__isnull=False)),
                name="owner_is_user_or_group",
                violation_error_message="An owner is either a user or a group, not both and not neither.",
            ),
            models.UniqueConstraint(fields=["resource", "user"], name="owner_unique_user"),
            models.UniqueConstraint(fields=["resource", "group"], name="owner_unique_group"),
        ]

    def __str__(self) -> str:
        return str(self.user or self.group)


class RequestRule(models.Model):
    """How requests for a resource are judged. The highest-priority rule that matches the
    requester (by group, or any requester when no group is set) applies."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="request_rules")
    name = models.CharField(max_length=150, blank=True)
    priority = models.PositiveIntegerField(
        default=100, help_text="Higher wins when several rules match."
    )
    requester_group = models.ForeignKey(
        UserGroup,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="request_rules",
        help_text="Applies only to members of this group; empty means every requester.",
    )
    allow_requests = models.BooleanField(default=True)
    auto_approve = models.BooleanField(default=False)
    max_duration = models.DurationField(
        null=True, blank=True, default=timedelta(days=7), help_text="Empty means no maximum."
    )
    recommended_duration = models.DurationField(null=True, blank=True, default=timedelta(hours=8))
    allow_until_revoked = models.BooleanField(
        default=False, help_text="Allow access with no expiry."
    )
    require_reason = models.BooleanField(default=True)
    require_ticket = models.BooleanField(default=False)
    require_deny_comment = models.BooleanField(
        default=True,
        help_text="A reviewer who denies says why; the requester sees it and the audit log keeps it.",
    )
    extension_policy = models.CharField(
        max_length=20, choices=ExtensionPolicy.choices, default=ExtensionPolicy.SAME_AS_REQUEST
    )
    allow_self_approval = models.BooleanField(
        default=False, help_text="Let a requester who is also a reviewer approve their own request."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["resource", "-priority", "id"]

    def __str__(self) -> str:
        return self.name or f"Rule {self.pk} for {self.resource.name}"

    def clean(self) -> None:
        errors = {}
        if self.max_duration is not None and self.max_duration <= timedelta(0):
            errors["max_duration"] = "The maximum duration must be positive."
        if self.recommended_duration is not None and self.recommended_duration <= timedelta(0):
            errors["recommended_duration"] = "The recommended duration must be positive."
        if (
            self.max_duration is not None
            and self.recommended_duration is not None
            and self.recommended_duration > self.max_duration
        ):
            errors["recommended_duration"] = "The recommended duration cannot exceed the maximum."
        if errors:
            raise ValidationError(errors)

    def relaxations(self) -> list[str]:
        """What the rule lets through without someone else deciding, or without an end, in
        words ("approves requests automatically", ...); empty for a rule that relaxes
        nothing. Only admins turn these on, and while a rule has any of them only admins
        change whom it applies to, its priority, or delete it (access/services/rules.py)."""
        found = []
        if self.auto_approve:
            found.append("approves requests automatically")
        if self.allow_self_approval:
            found.append("lets a requester approve their own request")
        if self.allow_until_revoked:
            found.append("allows access until revoked")
        if self.max_duration is None:
            found.append("has no maximum duration")
        # An auto-approving rule that judges extensions like requests approves them too.
        if self.extension_policy == ExtensionPolicy.AUTO_APPROVE or (
            self.auto_approve and self.extension_policy == ExtensionPolicy.SAME_AS_REQUEST
        ):
            found.append("approves extensions automatically")
        return found

    def active_relaxations(self) -> list[str]:
        """The relaxations that take effect: none while the rule refuses every request."""
        return self.relaxations() if self.allow_requests else []


# A rule has at most this many approval stages, numbered 1 to MAX_RULE_STAGES.
MAX_RULE_STAGES = 3


class RequestRuleStage(models.Model):
    """One approval stage of a rule: who reviews, and whether any one or all must approve."""

    rule = models.ForeignKey(RequestRule, on_delete=models.CASCADE, related_name="stages")
    order = models.PositiveSmallIntegerField(default=1)
    reviewers = models.CharField(
        max_length=16, choices=ReviewerKind.choices, default=ReviewerKind.OWNERS
    )
    mode = models.CharField(max_length=8, choices=StageMode.choices, default=StageMode.ANY)

    class Meta:
        ordering = ["rule", "order"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "order"], name="stage_unique_order"),
            models.CheckConstraint(
                condition=Q(order__gte=1) & Q(order__lte=MAX_RULE_STAGES),
                name="stage_order_1_to_3",
            ),
        ]

    def __str__(self) -> str:
        return f"Stage {self.order}: {self.get_reviewers_display()} ({self.get_mode_display()})"


class Grant(models.Model):
    """A user's access to a resource at an access level, whatever its source."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="grants")
    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="grants")
    access_level = models.ForeignKey(AccessLevel, on_delete=models.CASCADE, related_name="grants")
    source = models.CharField(max_length=16, choices=GrantSource.choices)
    status = models.CharField(
        max_length=16, choices=GrantStatus.choices, default=GrantStatus.PENDING
    )
    starts_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty means until revoked.")
    propagation_status = models.CharField(
        max_length=24, choices=PropagationStatus.choices, default=PropagationStatus.NOT_STARTED
    )
    last_error = models.TextField(blank=True)
    request = models.ForeignKey(
        "AccessRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="granted",
        help_text="The request this grant came from.",
    )
    assignment = models.ForeignKey(
        "Assignment", null=True, blank=True, on_delete=models.RESTRICT, related_name="grants"
    )
    warned_day_at = models.DateTimeField(null=True, blank=True, editable=False)
    warned_hour_at = models.DateTimeField(null=True, blank=True, editable=False)
    granted_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="grants_given"
    )
    revoked_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="grants_revoked"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="grant_status_expiry_idx"),
            models.Index(fields=["user", "status"], name="grant_user_status_idx"),
            models.Index(fields=["resource", "status"], name="grant_resource_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.resource.name} ({self.access_level.name})"

    def extension_refusal(self) -> str:
        """Why this grant cannot be extended, in words; "" when it can. My access offers
        Extend only when this is "", and the services refuse with this text, so the page,
        the API and an approval agree.

        Only access that holds, or is still on its way to AWS, is worth more time: an
        ended grant, one that never ends, and one whose first apply failed (it never held;
        its error says why) are not."""
        if self.status not in (GrantStatus.PENDING, GrantStatus.ACTIVE):
            return "This access has ended; request it again instead."
        if self.expires_at is None:
            return "This access does not expire; there is nothing to extend."
        if (
            self.status == GrantStatus.PENDING
            and self.propagation_status == PropagationStatus.FAILED
        ):
            return (
                "This access was never granted in AWS (see its error), so there is nothing to "
                "extend; give it up, and request it again once the cause is fixed."
            )
        return ""

    def clean(self) -> None:
        """What makes a grant impossible, per field. A new grant also needs an active user,
        a resource and a level still in AWS, and an expiry still to come; the admin's form
        and ``create_grant`` both ask here."""
        errors: dict[str, str] = {}
        adding = self._state.adding
        if adding and self.user_id and not self.user.is_active:
            errors["user"] = f"{self.user.email} is deactivated and cannot receive access."
        if adding and self.resource_id and self.resource.deleted_at is not None:
            errors["resource"] = f"{self.resource.name} no longer exists in AWS."
        if self.access_level_id and self.resource_id:
            if self.access_level.resource_id != self.resource_id:
                errors["access_level"] = "This access level belongs to another resource."
            elif adding and self.access_level.deleted_at is not None:
                errors["access_level"] = (
                    f"The access level {self.access_level.name} no longer exists."
                )
        if self.expires_at is not None:
            if adding and not in_the_future(self.expires_at):
                errors["expires_at"] = EXPIRY_IN_THE_PAST
            elif self.starts_at and self.expires_at <= self.starts_at:
                errors["expires_at"] = "The expiry must be after the start."
        if errors:
            raise ValidationError(errors)


class Assignment(models.Model):
    """The provider-side thing a grant materialises as: one (user, resource, access level),
    shared by overlapping grants and removed only when the last of them ends. Its ``status``
    is where its lifecycle stands: what Portcullis last made true in AWS, or what it still
    has to do there; the grants pointing at it say what should be.

    The status moves only through the transitions below (``mark_*``, ``request_reapply``),
    each writing the status and the columns that go with it in one statement."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="assignments")
    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="assignments")
    access_level = models.ForeignKey(
        AccessLevel, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(
        max_length=20, choices=AssignmentStatus.choices, default=AssignmentStatus.ABSENT
    )
    driver_state = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Consecutive failed attempts; 0 once a call succeeds."
    )
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    alerted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the failing alert was raised (cleared on success)."
    )
    applied_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "resource", "access_level"], name="assignment_unique_triple"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.resource.name} ({self.access_level.name})"

    @property
    def in_aws(self) -> bool:
        return self.status in ASSIGNMENT_IN_AWS

    # Transitions. The engine writes with update(), not save(): other processes plan the
    # assignment (next_attempt_at) or ask for a re-apply while a driver call runs, and a
    # save() of the whole row would overwrite what they wrote.
    def _move(self, **fields: Any) -> None:
        Assignment.objects.filter(pk=self.pk).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)

    @staticmethod
    def _succeeded(now: datetime) -> dict[str, Any]:
        return {"attempts": 0, "last_error": "", "alerted_at": None, "updated_at": now}

    def mark_applied(self, now: datetime, driver_state: dict[str, Any] | None) -> None:
        """The driver made AWS hold it (a first apply, a re-apply or a retry)."""
        fields = {"status": AssignmentStatus.APPLIED, "applied_at": now, **self._succeeded(now)}
        if driver_state is not None:
            fields["driver_state"] = driver_state
        self._move(**fields)

    def mark_kept(self, now: datetime) -> None:
        """AWS holds it and another grant still needs it: nothing was called, the status
        stays (a re-apply asked for meanwhile is kept); a past failure is over."""
        self._move(**self._succeeded(now))

    def mark_removed(self, now: datetime, driver_state: dict[str, Any] | None) -> None:
        """AWS no longer holds it (removed, or never applied)."""
        fields = {"status": AssignmentStatus.ABSENT, "removed_at": now, **self._succeeded(now)}
        if driver_state is not None:
            fields["driver_state"] = driver_state
        self._move(**fields)

    def mark_waiting(self, now: datetime, message: str) -> None:
        """The provider cannot name the user yet (no OIDC subject): nothing is planned until
        the user signs in (``retry_waiting_for_subject``)."""
        self._move(
            status=AssignmentStatus.WAITING_FOR_USER,
            last_error=message,
            next_attempt_at=None,
            updated_at=now,
        )

    def mark_failed(
        self,
        now: datetime,
        *,
        operation: str,
        error: str,
        retry_at: datetime,
        alert: bool,
        left_nothing: bool = False,
    ) -> None:
        """A driver call failed: count it and plan the retry. A failed apply over what AWS
        holds leaves it held, to be applied again; one that left nothing in AWS (the driver
        undid it) leaves an assignment that held nothing not in AWS, so that a revoke has
        nothing to remove; anything else is failing."""
        if operation == "apply" and self.in_aws:
            status = AssignmentStatus.REAPPLY
        elif operation == "apply" and left_nothing and self.status == AssignmentStatus.ABSENT:
            status = AssignmentStatus.ABSENT
        else:
            status = AssignmentStatus.FAILING
        fields: dict[str, Any] = {
            "status": status,
            "attempts": self.attempts + 1,
            "last_error": error[:4000],
            "next_attempt_at": retry_at,
            "updated_at": now,
        }
        if alert:
            fields["alerted_at"] = now
        self._move(**fields)

    def mark_found_in_aws(self, now: datetime) -> None:
        """AWS was seen holding it (an observed grant, or sync finding a revoked one back)."""
        self._move(status=AssignmentStatus.APPLIED, updated_at=now)

    def unplan(self) -> None:
        """Clears the planned attempt this instance read; a plan made since stays."""
        if self.next_attempt_at is not None:
            Assignment.objects.filter(pk=self.pk, next_attempt_at=self.next_attempt_at).update(
                next_attempt_at=None
            )


class AccessRequest(models.Model):
    """A request for access (or to extend a grant), judged by the rule that applied when it
    was made: its stages are copied into ``rule_snapshot`` so later rule edits do not move
    the goalposts of a request in flight."""

    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="requests_made")
    user = models.ForeignKey(
        User,
        on_delete=models.CASCADE,
        related_name="access_requests",
        help_text="Who gets the access (the requester, or someone they ask for).",
    )
    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="requests")
    access_level = models.ForeignKey(AccessLevel, on_delete=models.CASCADE, related_name="requests")
    kind = models.CharField(max_length=16, choices=RequestKind.choices, default=RequestKind.NEW)
    grant = models.ForeignKey(
        Grant,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="extension_requests",
        help_text="For an extension, the grant to extend.",
    )
    rule = models.ForeignKey(
        RequestRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests"
    )
    rule_snapshot = models.JSONField(default=dict)
    duration = models.DurationField(null=True, blank=True, help_text="Empty means until revoked.")
    reason = models.TextField(blank=True)
    ticket = models.CharField("ticket reference", max_length=200, blank=True)
    status = models.CharField(
        max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    current_stage = models.PositiveSmallIntegerField(default=1)
    auto_approved = models.BooleanField(default=False)
    pending_until = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccessRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "pending_until"], name="request_status_pending_idx"),
            models.Index(fields=["user", "status"], name="request_user_status_idx"),
        ]

    def __str__(self) -> str:
        return f"Request {self.pk}: {self.user} → {self.resource.name} ({self.access_level.name})"

    @property
    def stages(self) -> list[dict]:
        return list(self.rule_snapshot.get("stages", []))

    @property
    def is_pending(self) -> bool:
        return self.status == RequestStatus.PENDING

    @property
    def denial_needs_comment(self) -> bool:
        """Whether denying it needs a comment: as its rule said when it was made (requests
        made before rules had the setting need one)."""
        return bool((self.rule_snapshot or {}).get("require_deny_comment", True))

    def _current_reviewer_rows(self) -> list[StageReviewer]:
        if "stage_reviewers" in getattr(self, "_prefetched_objects_cache", {}):
            rows = [r for r in self.stage_reviewers.all() if r.stage == self.current_stage]
        else:
            rows = list(
                self.stage_reviewers.filter(stage=self.current_stage).select_related("user")
            )
        return sorted(rows, key=lambda row: row.user_id)

    @property
    def reviewer_ids(self) -> list[int]:
        """Ids of who may decide the current stage, fixed when it started, ascending.
        Lists prefetch them (``AccessRequestQuerySet.with_reviewers``); on a single
        request this reads them, one query."""
        return [row.user_id for row in self._current_reviewer_rows()]

    @property
    def reviewers(self) -> list[User]:
        """The users behind ``reviewer_ids``, in the same order and at the same cost."""
        return [row.user for row in self._current_reviewer_rows()]


class StageReviewer(models.Model):
    """One person who may decide one stage of a request, fixed when the stage starts
    (``services.requests._start_stage``). The rows of past stages stay: who was asked."""

    # The unique constraint's index serves lookups by request; the index below, by user.
    request = models.ForeignKey(
        AccessRequest, on_delete=models.CASCADE, related_name="stage_reviewers", db_index=False
    )
    stage = models.PositiveSmallIntegerField()
    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="stages_to_review", db_index=False
    )

    class Meta:
        ordering = ["request", "stage", "user"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "stage", "user"], name="stage_reviewer_unique"
            )
        ]
        # "Awaiting a decision by this user": their rows, joined to the requests' stage.
        indexes = [
            models.Index(fields=["user", "request", "stage"], name="stage_reviewer_user_idx")
        ]

    def __str__(self) -> str:
        return f"{self.user} reviews stage {self.stage} of request {self.request_id}"


class Approval(models.Model):
    """One reviewer's decision on one stage of a request."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="approvals")
    stage = models.PositiveSmallIntegerField()
    reviewer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="approvals")
    decision = models.CharField(max_length=16, choices=Decision.choices)
    comment = models.TextField(blank=True)
    is_override = models.BooleanField(
        default=False, help_text="An admin decided outside the stage's reviewers."
    )
    is_self_approval = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["request", "stage", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "stage", "reviewer"], name="approval_one_per_reviewer_stage"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} {self.decision} stage {self.stage} of request {self.request_id}"


class Lease(models.Model):
    """A named lease: only its holder does the thing it names until ``until`` (the grant
    engine, an app's events poller, an assignment being reconciled, a shared document in
    the provider). Claimed and renewed by conditional update; see access/leases.py."""

    # Names carry what they lock, e.g. "assignment:42", "lock:iam-role:<account>:<role>".
    name = models.CharField(max_length=255, unique=True)
    # "host:pid:claim", so the admin and logs say which process holds it.
    holder = models.CharField(max_length=64, blank=True)
    until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


API_TOKEN_PREFIX = "pcl_"


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; the token is shown once at creation."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=16, help_text="The first characters, to recognise the token."
    )
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    read_only = models.BooleanField(
        default=False, help_text="Refused on anything but reading (GET, HEAD, OPTIONS)."
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def clean(self) -> None:
        """A token has a name to recognise it by, and a new one an expiry to come within
        API_TOKEN_MAX_DAYS (every token expires)."""
        errors: dict[str, str] = {}
        self.name = (self.name or "").strip()
        longest_name = ApiToken._meta.get_field("name").max_length
        if not self.name:
            errors["name"] = "Give the token a name, so you can recognise it later."
        elif longest_name is not None and len(self.name) > longest_name:
            errors["name"] = (
                f"A token name has at most {longest_name} characters; this has {len(self.name)}."
            )
        if self._state.adding:
            days = int(settings.API_TOKEN_MAX_DAYS)
            if self.expires_at is None:
                errors["expires_at"] = "Every token expires: give it an expiry."
            elif not in_the_future(self.expires_at):
                errors["expires_at"] = EXPIRY_IN_THE_PAST
            elif self.expires_at > timezone.now() + timedelta(days=days, minutes=1):
                errors["expires_at"] = f"A token lasts at most {days} days (API_TOKEN_MAX_DAYS)."
        if errors:
            raise ValidationError(errors)

    @staticmethod
    def hash_token(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @staticmethod
    def generate() -> str:
        return API_TOKEN_PREFIX + secrets.token_urlsafe(32)

    @property
    def ends_at(self) -> datetime | None:
        """When the token stops working: its expiry, or API_TOKEN_MAX_DAYS after it was
        made when that comes first (the setting may have been lowered since)."""
        if self.created_at is None:
            return self.expires_at
        longest = self.created_at + timedelta(days=int(settings.API_TOKEN_MAX_DAYS))
        return longest if self.expires_at is None else min(self.expires_at, longest)

    @property
    def is_usable(self) -> bool:
        ends_at = self.ends_at
        return self.revoked_at is None and (ends_at is None or ends_at > timezone.now())
