"""Admin for grants: every user's access, whatever its source."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.forms import ModelForm
from django.http import HttpRequest

from access.admin.base import GrantProtectionMixin, PortcullisModelAdmin
from access.choices import GrantSource
from access.models import Grant


@admin.register(Grant)
class GrantAdmin(GrantProtectionMixin, PortcullisModelAdmin):
    """Grants added here have the source "admin" and wait, pending, for the grant task to
    apply them in AWS. Status and propagation are the workflow's: read-only here."""

    list_display = (
        "user",
        "resource",
        "access_level",
        "source",
        "status",
        "propagation_status",
        "expires_at",
    )
    list_filter = ("status", "source", "propagation_status", "resource__type")
    search_fields = ("user__email", "resource__name", "=resource__remote_id", "access_level__name")
    search_help_text = "User email, resource name or access level (contains), remote id (exact)."
    list_select_related = ("user", "resource", "access_level")
    autocomplete_fields = ("user", "resource", "access_level")
    fieldsets = (
        (None, {"fields": ("user", "resource", "access_level", "starts_at", "expires_at")}),
        (
            "State",
            {"fields": ("source", "status", "propagation_status", "last_error", "granted_by")},
        ),
        ("Revocation", {"fields": ("revoked_at", "revoked_by", "revoke_reason")}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = (
        "source",
        "status",
        "propagation_status",
        "last_error",
        "granted_by",
        "revoked_at",
        "revoked_by",
        "revoke_reason",
        "created_at",
        "updated_at",
    )
    grants_lookup = "pk__in"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return self.readonly_fields
        # Who holds what, on which resource, is fixed once the grant exists.
        return ("user", "resource", "access_level", *self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Grant, form: ModelForm, change: bool) -> None:
        if not change:
            obj.source = GrantSource.ADMIN
            obj.granted_by = request.user
        super().save_model(request, obj, form, change)
