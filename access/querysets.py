"""Reusable filters and permission scoping for access models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.db.models import Exists, F, OuterRef, Prefetch, Q

from access import permissions
from access.choices import ASSIGNMENT_IN_AWS, AssignmentStatus, GrantStatus, RequestStatus

if TYPE_CHECKING:
    from access.models import AccessRequest, AnyUser, Assignment, Grant, Resource, User  # noqa: F401


class ResourceQuerySet(models.QuerySet["Resource"]):
    def live(self) -> ResourceQuerySet:
        return self.filter(deleted_at__isnull=True)

    def visible_to(self, user: AnyUser) -> ResourceQuerySet:
        """What a user may see in the catalogue and the API: every live resource, or all for
        admins and auditors (who also see deleted ones). Object checks fetch through this
        queryset (404 when it does not find the row), so the rule is written once."""
        if not permissions.is_signed_in(user) or not user.is_active:
            return self.none()
        if permissions.is_admin(user) or permissions.is_auditor(user):
            return self
        return self.live()


class AssignmentQuerySet(models.QuerySet["Assignment"]):
    def request_reapply(self) -> int:
        """Asks for a fresh apply of those AWS holds (the one transition taken on several
        rows at once, outside any assignment's lease). Returns how many."""
        return self.filter(status__in=ASSIGNMENT_IN_AWS).update(status=AssignmentStatus.REAPPLY)


class GrantQuerySet(models.QuerySet["Grant"]):
    def current(self) -> GrantQuerySet:
        return self.filter(
            status__in=[GrantStatus.PENDING, GrantStatus.ACTIVE, GrantStatus.REVOKING]
        )

    def for_user(self, user: User) -> GrantQuerySet:
        return self.filter(user=user)

    def visible_to(self, user: AnyUser) -> GrantQuerySet:
        """Grants a user may read: their own, their reports', those of resources they own,
        or all for admins and auditors. Object checks fetch through this queryset (404 when
        it does not find the row), so the rule is written once."""
        if not permissions.is_signed_in(user) or not user.is_active:
            return self.none()
        if permissions.is_admin(user) or permissions.is_auditor(user):
            return self
        return self.filter(
            Q(user=user)
            | Q(resource__owners__user=user)
            | Q(resource__owners__group__members=user)
            | Q(user__manager=user)
        ).distinct()


class AccessRequestQuerySet(models.QuerySet["AccessRequest"]):
    def awaiting_decision_by(self, user: AnyUser) -> AccessRequestQuerySet:
        """Pending requests whose current stage ``user`` reviews and can still decide: not
        the ones they already decided at this stage, nor their own unless the rule lets
        them approve those. The approvals page, its count and the API all use this."""
        from access.models import Approval, StageReviewer

        if not permissions.is_signed_in(user):
            return self.none()
        reviews = StageReviewer.objects.filter(
            request=OuterRef("pk"), stage=OuterRef("current_stage"), user=user
        )
        already_decided = Approval.objects.filter(
            request=OuterRef("pk"), stage=OuterRef("current_stage"), reviewer=user
        )
        return (
            self.filter(Exists(reviews), status=RequestStatus.PENDING)
            .exclude(Exists(already_decided))
            .exclude(Q(user=user) | Q(requested_by=user), rule_snapshot__allow_self_approval=False)
        )

    def with_reviewers(self) -> AccessRequestQuerySet:
        """Prefetches the current stage's reviewers with their users, one query for the
        list, for ``AccessRequest.reviewer_ids`` and ``reviewers``."""
        return self.prefetch_related(current_reviewers())


def current_reviewers() -> Prefetch:
    """The prefetch of requests' current-stage reviewers with their users (one query),
    for querysets and for lists already read (``prefetch_related_objects``)."""
    from access.models import StageReviewer

    return Prefetch(
        "stage_reviewers",
        queryset=StageReviewer.objects.filter(stage=F("request__current_stage")).select_related(
            "user"
        ),
    )
