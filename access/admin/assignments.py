"""Admin for assignments: what Portcullis last made true in AWS for each (user, resource,
access level), its retries and its failing alert. Read-only: the grant task writes them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from access import leases
from access.admin.base import (
    AdminRoleMixin,
    HistoryAdminMixin,
    PortcullisTabularInline,
    ReadOnlyAdminMixin,
)
from access.leases import LeaseKind
from access.models import Assignment, Grant

ERROR_PREVIEW = 80


class FailingAssignmentFilter(admin.SimpleListFilter):
    """Assignments that raised the failing alert (cleared when a call succeeds)."""

    title = "failing in AWS"
    parameter_name = "failing"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Failing in AWS"), ("no", "Not failing")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(alerted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(alerted_at__isnull=True)
        return queryset


class GrantOfAssignmentInline(ReadOnlyAdminMixin, PortcullisTabularInline):
    model = Grant
    fk_name = "assignment"
    fields = ("source", "status", "propagation_status", "starts_at", "expires_at", "revoked_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    verbose_name_plural = "grants sharing this assignment"


@admin.register(Assignment)
class AssignmentAdmin(HistoryAdminMixin, ReadOnlyAdminMixin, AdminRoleMixin, admin.ModelAdmin):
    show_full_result_count = False
    list_per_page = 50
    list_display = (
        "user",
        "resource",
        "access_level",
        "status",
        "attempts",
        "next_attempt_at",
        "alerted_at",
        "last_error_preview",
        "updated_at",
    )
    list_filter = ("status", FailingAssignmentFilter, "resource__type")
    search_fields = ("user__email", "resource__name", "=resource__remote_id", "access_level__name")
    search_help_text = "User email, resource name or access level (contains), remote id (exact)."
    list_select_related = ("user", "resource", "access_level")
    fields = (
        "user",
        "resource",
        "access_level",
        "status",
        "attempts",
        "next_attempt_at",
        "alerted_at",
        "last_error",
        "driver_state",
        "held_by",
        "applied_at",
        "removed_at",
        "created_at",
        "updated_at",
    )
    inlines = (GrantOfAssignmentInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user", "resource", "access_level")

    @admin.display(description="being reconciled by")
    def held_by(self, obj: Assignment) -> str:
        return leases.held_by(leases.name(LeaseKind.ASSIGNMENT, obj.pk)) or "nobody"

    @admin.display(description="last error")
    def last_error_preview(self, obj: Assignment) -> str:
        return Truncator(obj.last_error).chars(ERROR_PREVIEW)
