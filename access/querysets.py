"""Reusable filters and permission scoping for access models."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Q

from access.choices import GrantStatus

if TYPE_CHECKING:
    from access.models import User


class ResourceQuerySet(models.QuerySet):
    def live(self) -> ResourceQuerySet:
        return self.filter(deleted_at__isnull=True)

    def owned_by(self, user: User) -> ResourceQuerySet:
        return self.filter(Q(owners__user=user) | Q(owners__group__members=user)).distinct()

    def visible_to(self, user: Any) -> ResourceQuerySet:
        """What a user may see in the catalogue and the API: every live resource, or all for
        admins and auditors (who also see deleted ones)."""
        from access import permissions

        if not getattr(user, "is_authenticated", False) or not user.is_active:
            return self.none()
        if permissions.is_admin(user) or permissions.is_auditor(user):
            return self
        return self.live()


class GrantQuerySet(models.QuerySet):
    def current(self) -> GrantQuerySet:
        return self.filter(
            status__in=[GrantStatus.PENDING, GrantStatus.ACTIVE, GrantStatus.REVOKING]
        )

    def for_user(self, user: User) -> GrantQuerySet:
        return self.filter(user=user)

    def expiring(self, before: datetime) -> GrantQuerySet:
        return self.filter(
            status=GrantStatus.ACTIVE, expires_at__isnull=False, expires_at__lte=before
        )

    def visible_to(self, user: Any) -> GrantQuerySet:
        from access import permissions

        if not getattr(user, "is_authenticated", False) or not user.is_active:
            return self.none()
        if permissions.is_admin(user) or permissions.is_auditor(user):
            return self
        return self.filter(
            Q(user=user)
            | Q(resource__owners__user=user)
            | Q(resource__owners__group__members=user)
            | Q(user__manager=user)
        ).distinct()
