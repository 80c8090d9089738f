"""The audit log in the admin: readable, never editable."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from audit.filters import recent_values
from audit.models import AuditEvent
from audit.views import can_read_audit_log, pretty_details

# The changelist counts at most this many matching rows: COUNT(*) over millions
# of events would make every admin page slow. Deeper history is on the audit
# page and the API, which page by id.
COUNT_LIMIT = 10_000


class BoundedCountPaginator(Paginator):
    """Counts at most COUNT_LIMIT rows, so the admin pages the newest matches only."""

    @cached_property
    def count(self) -> int:
        return self.object_list[:COUNT_LIMIT].count()  # type: ignore[attr-defined]  # a QuerySet


class RecentActionFilter(admin.SimpleListFilter):
    """Actions seen among the newest events, rather than a DISTINCT over the whole log."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(action, action) for action in recent_values("action")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent]
    ) -> QuerySet[AuditEvent]:
        value = self.value()
        return queryset.filter(action=value) if value else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "occurred_at",
        "actor_name",
        "actor_type",
        "action",
        "target_type",
        "target_label",
        "request_id",
        "ip_address",
    )
    list_display_links = ("id", "occurred_at")
    list_filter = (RecentActionFilter, "actor_type", "occurred_at")
    # Exact matches ("=") where an exact value is what one searches for; names and
    # labels are matched by part.
    search_fields = (
        "actor_name",
        "=action",
        "=target_type",
        "=target_id",
        "target_label",
        "=request_id",
    )
    search_help_text = (
        "Part of the actor's name or target label, or an exact action, target type, "
        "target id or request id."
    )
    ordering = ("-id",)
    show_full_result_count = False
    paginator = BoundedCountPaginator
    list_per_page = 100
    fields = (
        "id",
        "occurred_at",
        "actor_type",
        "actor_name",
        "actor_user_id",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "details_pretty",
        "request_id",
        "ip_address",
        "prev_hash",
        "hash",
        "key_id",
    )
    readonly_fields = fields

    # Who may read the log is one rule, shared with the audit page and the API.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_read_audit_log(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_read_audit_log(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="actor user id")
    def actor_user_id(self, obj: AuditEvent) -> int | None:
        # The id, not a link: the user may be gone, the event keeps who it was.
        return obj.actor_id

    @admin.display(description="details")
    def details_pretty(self, obj: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", pretty_details(obj.details))
