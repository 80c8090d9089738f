"""Reusable filters and permission scoping for access models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.db.models import Exists, OuterRef, Q, TextField
from django.db.models.functions import Cast

from access import permissions
from access.choices import GrantStatus, RequestStatus

if TYPE_CHECKING:
    from access.models import AccessRequest, AnyUser, Grant, Resource, User  # noqa: F401


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
        # stage_reviewers is a JSON list of ids, "[3, 14]" as text on both databases; the
        # text search works on SQLite too, where JSON containment is not available.
        # Through the requests' approvals (querysets.py is below models.py and names no model
        # class): one filter() call, so both conditions hold for the same approval.
        already_decided = self.model.objects.filter(
            pk=OuterRef("pk"), approvals__stage=OuterRef("current_stage"), approvals__reviewer=user
        )
        return (
            self.filter(status=RequestStatus.PENDING)
            .annotate(_reviewers_text=Cast("stage_reviewers", output_field=TextField()))
            .filter(_reviewers_text__regex=rf"(\[|\s){int(user.pk)}(,|\])")
            .exclude(Exists(already_decided))
            .exclude(Q(user=user) | Q(requested_by=user), rule_snapshot__allow_self_approval=False)
        )
