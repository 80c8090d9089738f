"""Read-only admin lists of what sync and validations record: runs, issues, checks, and
the bad messages of the events queue. Issues are resolved with the list's actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from access.admin.base import AdminRoleMixin
from access.permissions import is_admin, signed_in
from aws_integration.admin import display
from aws_integration.models import BadEventMessage, SyncIssue, SyncRun, Validation
from aws_integration.sync.services import resolve_issues

# Seconds between reloads of a running sync's page (read-only: nothing typed is lost).
SYNC_PAGE_REFRESH = 3


class ReadOnlyAdmin(AdminRoleMixin, admin.ModelAdmin):
    """Rows written by sync and validations only: admins read them, nobody edits them."""

    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ResolvedFilter(admin.SimpleListFilter):
    title = "resolved"
    parameter_name = "resolved"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Unresolved"), ("yes", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "no":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "app",
        "kind",
        "status_badge",
        "progress",
        "counts_display",
        "duration_display",
        "created_at",
        "requested_by",
    )
    list_display_links = ("id", "app")
    list_filter = ("status", "kind", "app")
    list_select_related = ("app", "requested_by")
    search_fields = ("account_id", "message")
    date_hierarchy = "created_at"
    fields = (
        "app",
        "kind",
        "status_badge",
        "account_id",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "progress",
        "duration_display",
        "counts_display",
        "counts",
        "message",
    )
    readonly_fields = fields

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: SyncRun) -> SafeString:
        return display.badge(obj.status, obj.get_status_display())

    @admin.display(description="progress")
    def progress(self, obj: SyncRun) -> SafeString:
        return display.progress_bar(obj)

    @admin.display(description="counts")
    def counts_display(self, obj: SyncRun) -> str:
        return display.counts_summary(obj)

    @admin.display(description="duration")
    def duration_display(self, obj: SyncRun) -> str:
        return display.format_duration(obj.duration)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if run is not None and run.status in display.ACTIVE_SYNC_STATUSES:
            context["refresh_seconds"] = SYNC_PAGE_REFRESH
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(SyncIssue)
class SyncIssueAdmin(ReadOnlyAdmin):
    actions = ("resolve_selected", "resolve_same_kind")
    list_display = (
        "scope",
        "code",
        "short_message",
        "app",
        "first_seen_at",
        "last_seen_at",
        "occurrences",
        "resolved_at",
    )
    list_filter = (ResolvedFilter, "app", "code")
    list_select_related = ("app",)
    search_fields = ("scope", "code", "message")
    fields = (
        "app",
        "scope",
        "code",
        "message",
        "occurrences",
        "first_seen_at",
        "last_seen_at",
        "resolved_at",
        "last_run",
        "bad_messages_link",
    )
    readonly_fields = fields

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # Unresolved first, then the most recent.
        return [F("resolved_at").asc(nulls_first=True), "-last_seen_at"]

    @admin.display(description="message")
    def short_message(self, obj: SyncIssue) -> str:
        return obj.message if len(obj.message) <= 120 else obj.message[:119] + "…"

    @admin.display(description="bad messages")
    def bad_messages_link(self, obj: SyncIssue) -> SafeString | str:
        if not obj.bad_messages.exists():
            return "—"
        url = reverse("admin:aws_integration_badeventmessage_changelist")
        return format_html('<a href="{}?issue__exact={}">The messages kept</a>', url, obj.pk)

    # Resolving ------------------------------------------------------------------------
    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return is_admin(request.user)

    @admin.action(description="Resolve the selected issues", permissions=["resolve"])
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet[SyncIssue]) -> None:
        count = resolve_issues(
            queryset, actor=signed_in(request.user), reason="resolved by an admin"
        )
        self._resolved_message(request, count)

    @admin.action(
        description="Resolve every open issue of the selected kinds (same app and code)",
        permissions=["resolve"],
    )
    def resolve_same_kind(self, request: HttpRequest, queryset: QuerySet[SyncIssue]) -> None:
        kinds = Q()
        for app_id, code in queryset.order_by().values_list("app_id", "code").distinct():
            kinds |= Q(app_id=app_id, code=code)
        count = resolve_issues(
            SyncIssue.objects.filter(kinds),
            actor=signed_in(request.user),
            reason="resolved by an admin",
        )
        self._resolved_message(request, count)

    def _resolved_message(self, request: HttpRequest, count: int) -> None:
        if count:
            self.message_user(request, f"{count} issue(s) resolved.", messages.SUCCESS)
        else:
            self.message_user(request, "No open issue among them: nothing changed.", messages.INFO)


@admin.register(BadEventMessage)
class BadEventMessageAdmin(ReadOnlyAdmin):
    """The bodies may hold account data: like every page here, Admin role only."""

    list_display = ("received_at", "code", "message_id", "receive_count", "short_error", "app")
    list_filter = ("code", "app")
    list_select_related = ("app",)
    search_fields = ("message_id",)
    fields = (
        "app",
        "code",
        "issue",
        "run",
        "message_id",
        "receive_count",
        "received_at",
        "error",
        "body_bytes",
        "body",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[BadEventMessage]:
        # The list shows no body: it is read on the message's own page.
        return super().get_queryset(request).defer("body")

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["-id"]

    @admin.display(description="error")
    def short_error(self, obj: BadEventMessage) -> str:
        return obj.error if len(obj.error) <= 120 else obj.error[:119] + "…"


@admin.register(Validation)
class ValidationAdmin(ReadOnlyAdmin):
    list_display = ("name", "app", "status_badge", "severity", "missing", "checked_at")
    list_filter = ("status", "severity", "app")
    list_select_related = ("app",)
    search_fields = ("key", "name")
    fields = (
        "app",
        "key",
        "name",
        "why",
        "status_badge",
        "severity",
        "missing",
        "details",
        "checked_at",
    )
    readonly_fields = fields

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["app", "status", "key"]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Validation) -> SafeString:
        return display.badge(obj.status, obj.get_status_display())

    @admin.display(description="missing")
    def missing(self, obj: Validation) -> SafeString | str:
        names = display.missing_names(obj)
        if not names:
            return "—"
        return format_html("<code>{}</code>", ", ".join(names))
