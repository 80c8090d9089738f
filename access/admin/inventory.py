"""Admin for the inventory: apps, resources, access levels, owners and request rules.

Built for 100,000 resources: searches hit indexed columns where they can, related
objects are picked by autocomplete, lists join what they show (no query per row) and
no page counts the whole table twice.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from access.admin.base import (
    ActorFormMixin,
    GrantProtectionMixin,
    PortcullisModelAdmin,
    PortcullisTabularInline,
)
from access.forms import BaseStageFormSet
from access.models import (
    MAX_RULE_STAGES,
    AccessLevel,
    App,
    Owner,
    RequestRule,
    RequestRuleStage,
    Resource,
    User,
)
from access.permissions import signed_in
from access.services import rules as rule_service


class DeletedListFilter(admin.SimpleListFilter):
    """Whether sync last saw the object in AWS (deleted ones are kept for history)."""

    title = "is deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "No (live)"), ("yes", "Yes (gone from AWS)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


@admin.display(boolean=True, description="deleted", ordering="deleted_at")
def is_deleted(obj: Any) -> bool:
    return obj.deleted_at is not None


# Apps ---------------------------------------------------------------------------
@admin.register(App)
class AppAdmin(GrantProtectionMixin, PortcullisModelAdmin):
    list_display = ("name", "provider", "is_active", "resource_count", "created_at")
    list_filter = ("provider", "is_active")
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")
    grants_lookup = "resource__app__in"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(resource_count=Count("resources"))

    @admin.display(description="resources", ordering="resource_count")
    def resource_count(self, obj: App) -> int:
        return obj.resource_count  # type: ignore[attr-defined]  # annotated in get_queryset


# Resources ----------------------------------------------------------------------
class AccessLevelInline(PortcullisTabularInline):
    model = AccessLevel
    fields = ("name", "remote_id", "description", "deleted_at")
    readonly_fields = ("deleted_at",)
    show_change_link = True


class OwnerInline(PortcullisTabularInline):
    model = Owner
    fields = ("user", "group", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user", "group")


class RequestRuleInline(PortcullisTabularInline):
    """Rules are listed here and edited on their own page, where their stages are."""

    model = RequestRule
    fields = ("name", "priority", "requester_group", "allow_requests", "auto_approve")
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("requester_group")


@admin.register(Resource)
class ResourceAdmin(GrantProtectionMixin, PortcullisModelAdmin):
    list_display = ("name", "type", "account_id", "region", "app", "risk_sensitivity", is_deleted)
    list_filter = ("type", "app", "risk_sensitivity", "region", DeletedListFilter)
    search_fields = ("name", "=remote_id", "=account_id", "arn")
    search_help_text = "Name or ARN (contains), remote id or account id (exact)."
    list_select_related = ("app",)
    autocomplete_fields = ("parent", "app")
    readonly_fields = (
        "remote_id",
        "arn",
        "first_seen_at",
        "last_seen_at",
        "deleted_at",
        "request_rules_link",
    )
    fieldsets = (
        (None, {"fields": ("app", "type", "name", "parent", "risk_sensitivity")}),
        (
            "In AWS",
            {"fields": ("remote_id", "arn", "account_id", "region", "tags", "metadata")},
        ),
        ("Seen by sync", {"fields": ("first_seen_at", "last_seen_at", "deleted_at")}),
        ("Request rules", {"fields": ("request_rules_link",)}),
    )
    inlines = (AccessLevelInline, OwnerInline, RequestRuleInline)
    grants_lookup = "resource__in"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Identifiers come from AWS through sync; they are typed in only when a
        # resource is added by hand.
        if obj is None:
            return ("first_seen_at", "last_seen_at", "deleted_at", "request_rules_link")
        return self.readonly_fields

    @admin.display(description="request rules")
    def request_rules_link(self, obj: Resource) -> str:
        if obj.pk is None:
            return "Save the resource first, then add its request rules."
        add_url = reverse("admin:access_requestrule_add") + "?" + urlencode({"resource": obj.pk})
        list_url = (
            reverse("admin:access_requestrule_changelist")
            + "?"
            + urlencode({"resource__id__exact": obj.pk})
        )
        return format_html(
            '<a href="{}">Add a request rule</a> · <a href="{}">all rules of this resource</a>',
            add_url,
            list_url,
        )


# Access levels and owners -------------------------------------------------------
@admin.register(AccessLevel)
class AccessLevelAdmin(GrantProtectionMixin, PortcullisModelAdmin):
    list_display = ("name", "resource", "remote_id", is_deleted)
    list_filter = ("resource__type", DeletedListFilter)
    search_fields = ("name", "=remote_id", "resource__name")
    list_select_related = ("resource",)
    autocomplete_fields = ("resource",)
    grants_lookup = "access_level__in"


@admin.register(Owner)
class OwnerAdmin(PortcullisModelAdmin):
    list_display = ("resource", "user", "group", "created_at")
    list_filter = ("resource__type",)
    search_fields = ("resource__name", "user__email", "group__name")
    list_select_related = ("resource", "user", "group")
    autocomplete_fields = ("resource", "user", "group")
    readonly_fields = ("created_at",)


# Request rules ------------------------------------------------------------------
# One check of a rule's stages for the admin and the owners' rule pages.
StageFormSet = BaseStageFormSet


STAGE_ORDERS = [("", "---------")] + [(str(n), str(n)) for n in range(1, MAX_RULE_STAGES + 1)]


class RequestRuleStageInline(PortcullisTabularInline):
    model = RequestRuleStage
    formset = StageFormSet
    fields = ("order", "reviewers", "mode")
    max_num = MAX_RULE_STAGES
    extra = 0

    def get_extra(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> int:
        return 1 if obj is None else 0

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        # Refuse a fourth stage on the server too, not only in the page's script.
        kwargs.setdefault("validate_max", True)
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "order":
            # No preselected order: with the model's default (1) shown, a new row left
            # as it is would count as unchanged and be dropped without a word.
            return forms.TypedChoiceField(
                label="Order", choices=STAGE_ORDERS, coerce=int, required=True
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class RequestRuleAdminForm(forms.ModelForm):
    """The admin's rule form: a change is judged by the check the owners' pages use
    (access/services/rules.py), with the admin making it as the actor."""

    actor: User | None = None  # set per request by RequestRuleAdmin.get_form

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # the instance now holds the new values
        rule = self.instance
        if rule.resource_id is None:
            return
        before = RequestRule.objects.filter(pk=rule.pk).first() if rule.pk is not None else None
        for problem in rule_service.rule_change_problems(
            signed_in(self.actor), rule.resource, before=before, after=rule
        ):
            self.add_error(None, problem)


@admin.register(RequestRule)
class RequestRuleAdmin(ActorFormMixin, PortcullisModelAdmin):
    list_display = (
        "__str__",
        "resource",
        "priority",
        "requester_group",
        "allow_requests",
        "auto_approve",
        "stage_count",
    )
    list_filter = ("allow_requests", "auto_approve", "extension_policy", "resource__type")
    search_fields = ("name", "resource__name", "requester_group__name")
    list_select_related = ("resource", "requester_group")
    autocomplete_fields = ("resource", "requester_group")
    readonly_fields = ("created_at", "updated_at")
    inlines = (RequestRuleStageInline,)
    audit_related = ("stages",)

    form = RequestRuleAdminForm

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(stage_count=Count("stages"))

    def _check_delete(self, request: HttpRequest, rule: RequestRule) -> None:
        try:
            rule_service.check_rule_change(
                signed_in(request.user), rule.resource, before=rule, after=None
            )
        except ValidationError as exc:
            raise PermissionDenied(" ".join(exc.messages)) from exc

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._check_delete(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for rule in queryset.select_related("resource"):
            self._check_delete(request, rule)
        super().delete_queryset(request, queryset)

    @admin.display(description="stages", ordering="stage_count")
    def stage_count(self, obj: RequestRule) -> int:
        return obj.stage_count  # type: ignore[attr-defined]  # annotated in get_queryset
