"""The AWS app in the admin: its settings form, and on its page everything needed to
connect it: the External ID, the documents to paste into AWS, validations, sync runs and
sync issues, with "Refresh validations" and "Sync now"."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_GET, require_POST

from access.admin.base import GrantProtectionMixin, PortcullisModelAdmin
from aws_integration import services, setup_checks, setup_policies
from aws_integration.admin import display
from aws_integration.choices import SyncStatus, ValidationStatus
from aws_integration.forms import IDENTITY_CENTER_FIELDS, IDENTITY_CENTER_HINT, AwsAppForm
from aws_integration.models import AwsApp, SyncRun
from aws_integration.sync.services import request_sync

logger = logging.getLogger(__name__)

RECENT_SYNC_RUNS = 10
SYNC_ISSUES_SHOWN = 50
UNKNOWN_EVENTS_SHOWN = 10
SYNC_RUNS_TEMPLATE = "aws_integration/admin/sync_runs.html"
SYNC_RUNS_PAGE_TEMPLATE = "admin/aws_integration/awsapp/sync_runs.html"
# The query string with which the app page's script asks for the runs table alone.
FRAGMENT = "fragment=1"


def sync_runs_list_url(app: AwsApp) -> str:
    """Every sync run of the app, in the SyncRun changelist (filters, search, paging)."""
    return reverse("admin:aws_integration_syncrun_changelist") + f"?app__id__exact={app.pk}"


def run_validations_with_message(request: HttpRequest, app: AwsApp) -> None:
    """Runs the app's validations and says how they went. A failure to run them is a
    message, never an error page: the app itself is saved either way."""
    try:
        results = setup_checks.run_validations(app, actor=request.user)
    except Exception as exc:  # an unexpected AWS or network error must not lose the page
        logger.exception("Validations of app %s could not run", app.pk)
        messages.error(request, f"Validations could not run: {exc}")
        return
    failed = [v for v in results if v.status == ValidationStatus.FAILED]
    passed = sum(1 for v in results if v.status == ValidationStatus.PASSED)
    summary = f"Validations of “{app}”: {passed} passed, {len(failed)} failed."
    if failed:
        names = ", ".join(v.name for v in failed[:5]) + (" …" if len(failed) > 5 else "")
        messages.error(request, f"{summary} Failed: {names}.")
    else:
        messages.success(request, summary)


@admin.register(AwsApp)
class AwsAppAdmin(GrantProtectionMixin, PortcullisModelAdmin):
    form = AwsAppForm
    grants_lookup = "resource__app__in"
    list_display = (
        "name",
        "management_account_id",
        "organization_management",
        "identity_center_management",
        "failed_validations",
        "last_sync_status",
    )
    search_fields = ("name", "management_account_id")
    fieldsets = (
        (
            "AWS organization",
            {
                "fields": (
                    "name",
                    "management_account_id",
                    "ingester_role_name",
                    "organization_management",
                    "regions",
                    "full_sync_interval",
                )
            },
        ),
        (
            "IAM Identity Center",
            {
                "fields": ("identity_center_management", *IDENTITY_CENTER_FIELDS),
                "description": f"{IDENTITY_CENTER_HINT} Find them in the IAM Identity Center "
                "console under Settings.",
            },
        ),
        (
            "Real-time sync",
            {
                "fields": ("sqs_queue_url",),
                "description": "An SQS queue receiving CloudTrail events from an EventBridge "
                "rule; without it, changes arrive with the next full sync.",
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        latest = SyncRun.objects.filter(app=OuterRef("pk")).order_by("-created_at", "-id")
        return (
            super()
            .get_queryset(request)
            .annotate(
                failed_validation_count=Count(
                    "validations", filter=Q(validations__status=ValidationStatus.FAILED)
                ),
                last_sync=Subquery(latest.values("status")[:1]),
            )
        )

    @admin.display(description="failed validations", ordering="failed_validation_count")
    def failed_validations(self, obj: AwsApp) -> int:
        return obj.failed_validation_count  # type: ignore[attr-defined]  # annotated in get_queryset

    @admin.display(description="last sync")
    def last_sync_status(self, obj: AwsApp) -> str:
        last_sync = obj.last_sync  # type: ignore[attr-defined]  # annotated in get_queryset
        if not last_sync:
            return "never"
        return display.badge(last_sync, SyncStatus(last_sync).label)

    # Saving ---------------------------------------------------------------------------
    def save_related(self, request: HttpRequest, form: Any, formsets: list, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        app = form.instance
        # After commit: the checks call AWS, and must see the saved values.
        transaction.on_commit(lambda: run_validations_with_message(request, app))

    # The page -------------------------------------------------------------------------
    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        app = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if app is not None and self.has_view_or_change_permission(request, app):
            context.update(self._setup_context(request, app))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _setup_context(self, request: HttpRequest, app: AwsApp) -> dict[str, Any]:
        aws_settings = services.get_aws_settings()
        issues = list(
            app.sync_issues.order_by(F("resolved_at").asc(nulls_first=True), "-last_seen_at")[
                :SYNC_ISSUES_SHOWN
            ]
        )
        validations = display.sorted_validations(list(app.validations.all()))
        unknown_events = list(app.unknown_event_names.all()[: UNKNOWN_EVENTS_SHOWN + 1])
        return {
            "external_id": aws_settings.external_id,
            "principal_missing": not settings.PORTCULLIS_AWS_PRINCIPAL_ARN,
            "oidc_missing": not (aws_settings.oidc_issuer_url and aws_settings.oidc_client_id),
            "documents": setup_policies.documents(app, aws_settings),
            "unscoped_permissions": setup_policies.unscoped_permissions(app),
            "requestable_tag": setup_policies.requestable_tag(),
            "validations": [
                {
                    "validation": v,
                    "missing": display.missing_names(v),
                    "details": display.other_details(v),
                }
                for v in validations
            ],
            "sync_issues": issues,
            "unknown_events": unknown_events[:UNKNOWN_EVENTS_SHOWN],
            "unknown_events_more": (
                app.unknown_event_names.count() - UNKNOWN_EVENTS_SHOWN
                if len(unknown_events) > UNKNOWN_EVENTS_SHOWN
                else 0
            ),
            "bad_messages_url": reverse("admin:aws_integration_badeventmessage_changelist")
            + f"?app__id__exact={app.pk}",
            **self._sync_runs_context(app),
            "regenerate_url": reverse("admin:aws_integration_awssettings_regenerate_external_id")
            + f"?next={request.path}",
            "aws_settings_url": reverse(
                "admin:aws_integration_awssettings_change", args=[aws_settings.pk]
            ),
            "refresh_validations_url": reverse(
                "admin:aws_integration_awsapp_refresh_validations", args=[app.pk]
            ),
            "sync_now_url": reverse("admin:aws_integration_awsapp_sync_now", args=[app.pk]),
            "sync_runs_url": reverse("admin:aws_integration_awsapp_sync_runs", args=[app.pk])
            + f"?{FRAGMENT}",
            "sync_runs_list_url": sync_runs_list_url(app),
        }

    def _sync_runs_context(self, app: AwsApp) -> dict[str, Any]:
        runs = list(app.sync_runs.select_related("requested_by")[:RECENT_SYNC_RUNS])
        requested_by = display.requested_by_labels(runs)
        return {
            "sync_runs": [
                {
                    "run": run,
                    "progress": display.progress_bar(run),
                    "status": display.badge(run.status, run.get_status_display()),
                    "counts": display.counts_summary(run),
                    "duration": display.format_duration(run.duration),
                    "requested_by": requested_by[run.pk],
                }
                for run in runs
            ],
            "sync_active": any(run.status in display.ACTIVE_SYNC_STATUSES for run in runs),
        }

    # Actions on the page --------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/refresh-validations/",
                view(self.refresh_validations_view),
                name="aws_integration_awsapp_refresh_validations",
            ),
            path(
                "<path:object_id>/sync-now/",
                view(self.sync_now_view),
                name="aws_integration_awsapp_sync_now",
            ),
            path(
                "<path:object_id>/sync-runs/",
                view(self.sync_runs_view),
                name="aws_integration_awsapp_sync_runs",
            ),
            *super().get_urls(),
        ]

    def _app_for(self, request: HttpRequest, object_id: str, *, change: bool) -> AwsApp:
        if not object_id.isdigit():
            raise Http404("No AWS app has this id.")
        app = get_object_or_404(AwsApp, pk=object_id)
        allowed = (
            self.has_change_permission(request, app)
            if change
            else self.has_view_or_change_permission(request, app)
        )
        if not allowed:
            raise PermissionDenied
        return app

    def _back_to(self, app: AwsApp) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:aws_integration_awsapp_change", args=[app.pk]))

    def refresh_validations_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(self._refresh_validations)(request, object_id)

    def _refresh_validations(self, request: HttpRequest, object_id: str) -> HttpResponse:
        app = self._app_for(request, object_id, change=True)
        run_validations_with_message(request, app)
        return self._back_to(app)

    def sync_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(self._sync_now)(request, object_id)

    def _sync_now(self, request: HttpRequest, object_id: str) -> HttpResponse:
        app = self._app_for(request, object_id, change=True)
        try:
            run = request_sync(app, actor=request.user)
        except (ValueError, ValidationError) as exc:
            messages.error(request, f"The sync was not queued: {exc}")
            return self._back_to(app)
        messages.success(
            request, f"Sync of “{app}” queued (run {run.pk}); its progress shows below."
        )
        return self._back_to(app)

    def sync_runs_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_GET(self._sync_runs)(request, object_id)

    def _sync_runs(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The app's recent sync runs: the table alone for the app page's script, which
        refreshes it while a sync is active; opened directly, an admin page of its own."""
        app = self._app_for(request, object_id, change=False)
        runs = self._sync_runs_context(app)
        if request.GET.get("fragment") == "1":
            return TemplateResponse(request, SYNC_RUNS_TEMPLATE, runs)
        context = {
            **self.admin_site.each_context(request),
            **runs,
            "opts": self.opts,
            "original": app,
            "title": f"Sync runs of {app}",
            "recent": RECENT_SYNC_RUNS,
            "sync_runs_url": request.path + f"?{FRAGMENT}",
            "sync_runs_list_url": sync_runs_list_url(app),
        }
        return TemplateResponse(request, SYNC_RUNS_PAGE_TEMPLATE, context)
