"""The installation's AWS settings (one row): the External ID and the OIDC client.

Saving goes through ``services.update_aws_settings`` (audited, secret redacted) after the
form has fetched and checked the issuer's discovery document.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.views.decorators.http import require_http_methods

from access.admin.base import AdminRoleMixin
from aws_integration import services
from aws_integration.forms import AwsSettingsForm
from aws_integration.models import AwsSettings


def copyable(element_id: str, value: str) -> SafeString:
    """A value with a copy button (the page includes the small copy script)."""
    return format_html(
        '<code id="{}" class="portcullis-copyable">{}</code> '
        '<button type="button" class="button portcullis-copy" data-copy="{}">Copy</button>',
        element_id,
        value,
        element_id,
    )


@admin.register(AwsSettings)
class AwsSettingsAdmin(AdminRoleMixin, admin.ModelAdmin):
    form = AwsSettingsForm
    readonly_fields = ("external_id_display", "callback_url_display", "discovery_checked_at")
    fieldsets = (
        (
            "External ID",
            {
                "fields": ("external_id_display",),
                "description": "Every ingester role's trust policy requires this value; it "
                "keeps another AWS customer's Portcullis from assuming your roles.",
            },
        ),
        (
            "OIDC provider for AWS sessions",
            {
                "fields": (
                    "oidc_issuer_url",
                    "oidc_client_id",
                    "client_secret",
                    "clear_client_secret",
                    "callback_url_display",
                    "discovery_checked_at",
                ),
                "description": "Users sign in here before Connect; AWS accepts their ID token "
                "through the OIDC identity provider created in each account. Register the "
                "callback URL below with the identity provider. On save, the issuer's "
                "discovery document is fetched and checked.",
            },
        ),
    )

    # One row: no list, no add once it exists, never deleted ---------------------------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not AwsSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        obj = services.get_aws_settings()
        return HttpResponseRedirect(
            reverse("admin:aws_integration_awssettings_change", args=[obj.pk])
        )

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self.changelist_view(request)

    # Display --------------------------------------------------------------------------
    @admin.display(description="External ID")
    def external_id_display(self, obj: AwsSettings) -> SafeString:
        regenerate = reverse("admin:aws_integration_awssettings_regenerate_external_id")
        rotated = (
            f" Last regenerated {obj.external_id_rotated_at:%Y-%m-%d %H:%M} UTC."
            if obj.external_id_rotated_at
            else ""
        )
        return format_html(
            '{} <a class="button" href="{}">Regenerate External ID…</a><div class="help">{}</div>',
            copyable("external-id-value", obj.external_id),
            regenerate,
            rotated.strip(),
        )

    @admin.display(description="Callback URL")
    def callback_url_display(self, obj: AwsSettings) -> SafeString:
        return copyable("callback-url-value", obj.callback_url)

    @admin.display(description="Discovery document last checked")
    def discovery_checked_at(self, obj: AwsSettings) -> str:
        return f"{obj.oidc_checked_at:%Y-%m-%d %H:%M:%S} UTC" if obj.oidc_checked_at else "never"

    # Saving ---------------------------------------------------------------------------
    def save_model(
        self, request: HttpRequest, obj: AwsSettings, form: AwsSettingsForm, change: bool
    ) -> None:
        target = obj if obj.pk else services.get_aws_settings()
        saved = services.update_aws_settings(
            target,
            form.settings_changes(),
            request.user,
            checked=bool(form.cleaned_data.get("oidc_issuer_url")),
        )
        obj.pk = saved.pk
        if form.discovery_message:
            messages.success(request, form.discovery_message)

    def save_related(self, request: HttpRequest, form: Any, formsets: list, change: bool) -> None:
        # No related objects, and the form's own save is never used: the service saved.
        pass

    # Regenerating the External ID -------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "regenerate-external-id/",
                self.admin_site.admin_view(
                    require_http_methods(["GET", "POST"])(self.regenerate_external_id_view)
                ),
                name="aws_integration_awssettings_regenerate_external_id",
            ),
            *super().get_urls(),
        ]

    def regenerate_external_id_view(self, request: HttpRequest) -> HttpResponse:
        """GET asks for confirmation; only a POST (with its CSRF token) regenerates."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        obj = services.get_aws_settings()
        next_url = request.POST.get("next") or request.GET.get("next") or ""
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = ""
        next_url = next_url or reverse("admin:aws_integration_awssettings_change", args=[obj.pk])
        if request.method == "POST":
            services.regenerate_external_id(request.user)
            messages.warning(
                request,
                "A new External ID was generated. Update the trust policy of the ingester role "
                "in every account (or the ExternalId parameter of the StackSet): until then "
                "Portcullis cannot assume them.",
            )
            return HttpResponseRedirect(next_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Regenerate the External ID?",
            "external_id": obj.external_id,
            "next_url": next_url,
        }
        return TemplateResponse(
            request, "admin/aws_integration/awssettings/regenerate_external_id.html", context
        )
