"""Reusable filters and permission scoping for access models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import apps
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
        if not permissions.is_signed_in(user):
            return self.none()
        # Through the requests' own rows (querysets.py is below models.py and names no model
        # class): one filter() call each, so both conditions hold for the same row.
        reviews = self.model.objects.filter(
            pk=OuterRef("pk"),
            stage_reviewers__stage=OuterRef("current_stage"),
            stage_reviewers__user=user,
        )
        already_decided = self.model.objects.filter(
            pk=OuterRef("pk"), approvals__stage=OuterRef("current_stage"), approvals__reviewer=user
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
    # From the app registry: querysets.py is below models.py and imports none of it.
    reviewers = apps.get_model("access", "StageReviewer")
    return Prefetch(
        "stage_reviewers",
        queryset=reviewers.objects.filter(stage=F("request__current_stage")).select_related("user"),
    )
