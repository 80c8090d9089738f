"""Admin for access requests and their approvals: read-only, for looking things up.

Requests are made, decided and canceled on the portal's pages (and the API), which call
the workflow's services; here admins only read them.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from access.admin.base import (
    AdminRoleMixin,
    HistoryAdminMixin,
    PortcullisTabularInline,
    ReadOnlyAdminMixin,
)
from access.models import AccessRequest, Approval


class ApprovalInline(ReadOnlyAdminMixin, PortcullisTabularInline):
    model = Approval
    can_delete = False
    fields = ("stage", "reviewer", "decision", "comment", "is_override", "is_self_approval")
    readonly_fields = fields
    ordering = ("stage", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("reviewer")


@admin.register(AccessRequest)
class AccessRequestAdmin(HistoryAdminMixin, ReadOnlyAdminMixin, AdminRoleMixin, admin.ModelAdmin):
    show_full_result_count = False
    list_per_page = 50
    list_display = (
        "id",
        "user",
        "resource",
        "access_level",
        "kind",
        "status",
        "stage",
        "requested_by",
        "created_at",
    )
    list_display_links = ("id", "user")
    list_filter = ("status", "kind", "auto_approved", "resource__type")
    search_fields = (
        "=id",
        "user__email",
        "requested_by__email",
        "resource__name",
        "access_level__name",
        "ticket",
    )
    search_help_text = (
        "Request number (exact); user, requester, resource, access level or ticket (contains)."
    )
    list_select_related = ("user", "requested_by", "resource", "access_level")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "user",
                    "requested_by",
                    "resource",
                    "access_level",
                    "kind",
                    "grant",
                    "duration",
                    "reason",
                    "ticket",
                )
            },
        ),
        (
            "Decision",
            {
                "fields": (
                    "status",
                    "stage",
                    "reviewers",
                    "rule",
                    "rule_snapshot",
                    "auto_approved",
                    "pending_until",
                    "decided_at",
                )
            },
        ),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = ("stage", "reviewers")
    inlines = (ApprovalInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("user", "requested_by", "resource", "access_level", "grant", "rule")
        )

    @admin.display(description="stage", ordering="current_stage")
    def stage(self, obj: AccessRequest) -> str:
        stages = len(obj.stages)
        if not stages:
            return "-"
        return f"{obj.current_stage} of {stages}"

    @admin.display(description="reviewers of the current stage")
    def reviewers(self, obj: AccessRequest) -> str:
        emails = sorted(user.email for user in obj.reviewers)
        if not emails:
            return "-"
        return ", ".join(emails)
