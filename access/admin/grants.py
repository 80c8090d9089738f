"""Admin for grants: every user's access, whatever its source.

Admins grant directly here (source "admin"); every other change of a grant goes through
the workflow's services, from the list's actions: revoke (with a reason) and retry in AWS.
Existing grants are read-only.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AutocompleteSelect, RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import Truncator, smart_split, unescape_string_literal

from access.admin.base import ActorFormMixin, HistoryAdminMixin, PortcullisModelAdmin
from access.choices import GrantSource
from access.models import AccessLevel, Grant, Resource, User
from access.permissions import is_admin, signed_in
from access.services import grants as grant_service

# Characters of the last error shown in the list.
ERROR_PREVIEW = 60
# The list counts at most this many matching grants (as the audit log's admin does, with
# more): COUNT(*) over every grant made each page as slow as the table is large. 20 pages
# of the newest matches; a filter or a longer search narrows to the rest.
COUNT_LIMIT = 1000
IDS_LISTED = 1000
SEARCH_WORDS = 8


class BoundedCountPaginator(Paginator):
    """Counts at most COUNT_LIMIT grants, so the admin pages through the newest matches
    (and says COUNT_LIMIT when there are more)."""

    @cached_property
    def count(self) -> int:
        return self.object_list[:COUNT_LIMIT].count()  # type: ignore[attr-defined]  # a QuerySet


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def matched_ids(queryset: QuerySet) -> Any:
    """The ids of a search's matches: read once, as a list, when they are at most
    IDS_LISTED (the list page and its count then do not search that table again each);
    else the subquery."""
    ids = list(queryset.order_by().values_list("pk", flat=True)[: IDS_LISTED + 1])
    return ids if len(ids) <= IDS_LISTED else queryset.order_by().values("pk")


class FailingListFilter(admin.SimpleListFilter):
    """Grants whose assignment raised the failing alert: AWS keeps refusing them."""

    title = "failing in AWS"
    parameter_name = "failing"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Failing in AWS")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(pk__in=grant_service.failing_grants().values("pk"))
        return queryset


def level_label(level: AccessLevel) -> str:
    """A level as the admin offers it: several resources have a level named "Member"."""
    return f"{level.resource.name} · {level.name}"


class ResourceLevelField(forms.ModelChoiceField):
    """An access level labelled with its resource."""

    def label_from_instance(self, obj: Any) -> str:
        return level_label(obj)


def chosen_resource_id(data: Any) -> int | None:
    """The resource named in the add form's data (POST) or query string (GET), if any."""
    value = str(data.get("resource") or "")
    return int(value) if value.isdigit() else None


class ChooseResourceForm(forms.Form):
    """The add page's first step: the resource, whose access levels the form then offers."""

    resource = forms.ModelChoiceField(
        queryset=Resource.objects.filter(deleted_at__isnull=True),
        help_text="Next, the form offers this resource's access levels.",
        error_messages={
            "required": "Choose the resource to grant access to.",
            "invalid_choice": "No resource has this id: choose one from the list.",
        },
    )


class DirectGrantForm(forms.ModelForm):
    """A grant made by an admin: who, what, until when (empty: until revoked), and why."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Recorded in the audit log with the grant.",
    )

    class Meta:
        model = Grant
        fields = ("user", "resource", "access_level", "expires_at")
        help_texts = {"expires_at": "Leave empty for access until revoked."}

    # The admin making the grant (set by GrantAdmin.get_form for each request).
    actor: User | None = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # Form.clean returns cleaned_data
        user = cleaned.get("user")
        if user is not None:
            try:
                grant_service.check_direct_grant(self.actor, user)
            except grant_service.GrantError as exc:
                self.add_error("user", str(exc))
        # A deactivated user, a resource or level gone from AWS, a level of another
        # resource and an expiry passed are Grant.clean's, which the form runs after this.
        resource, level = cleaned.get("resource"), cleaned.get("access_level")
        # The same refusal as for requests: AWS would refuse the grant anyway.
        if resource is not None and (refusal := grant_service.not_requestable(resource)):
            self.add_error("resource", refusal)
        elif (
            resource is not None
            and level is not None
            and level.resource_id == resource.pk
            and (refusal := grant_service.not_requestable(resource, level))
        ):
            self.add_error("access_level", refusal)
        return cleaned


class RevokeForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Shown to the holder and kept in the audit log.",
        error_messages={"required": "Say why the access is revoked."},
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Say why the access is revoked.")
        return reason


@admin.register(Grant)
class GrantAdmin(HistoryAdminMixin, ActorFormMixin, PortcullisModelAdmin):
    """Grants added here have the source "admin" and wait, pending, for the grant task to
    apply them in AWS. Status and propagation are the workflow's: read-only here."""

    form = DirectGrantForm
    # Six narrow columns fit 1280 px beside the navigation and the filters: the holder by
    # email, resource and level in one cell, status with propagation and source in another,
    # and the last error cut short (the whole of it in its title and on the grant's page).
    list_display = ("holder", "access", "state", "expiry", "last_error_preview")
    list_display_links = ("holder",)
    list_filter = (
        "status",
        "source",
        "resource__type",
        FailingListFilter,
        "propagation_status",
    )
    # Searched by get_search_results (each field through its own table, not a join per row).
    search_fields = ("user__email", "resource__name", "=resource__remote_id", "access_level__name")
    paginator = BoundedCountPaginator
    search_help_text = "User email, resource name or access level (contains), remote id (exact)."
    list_select_related = ("user", "resource", "access_level")
    # The level is a plain list of the chosen resource's levels (formfield_for_foreignkey).
    autocomplete_fields = ("user", "resource")
    actions = ("revoke_grants", "retry_grants")
    add_fieldsets = (
        (None, {"fields": ("user", "resource", "access_level", "expires_at", "reason")}),
    )
    fieldsets = (
        (None, {"fields": ("user", "resource", "access_level", "starts_at", "expires_at")}),
        (
            "State",
            {
                "fields": (
                    "source",
                    "status",
                    "propagation_status",
                    "last_error",
                    "granted_by",
                    "request",
                )
            },
        ),
        (
            "In AWS",
            {
                "fields": (
                    "assignment_state",
                    "assignment_attempts",
                    "assignment_next_attempt",
                    "assignment_failing_since",
                    "assignment_last_error",
                )
            },
        ),
        ("Revocation", {"fields": ("revoked_at", "revoked_by", "revoke_reason")}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = (
        "assignment_state",
        "assignment_attempts",
        "assignment_next_attempt",
        "assignment_failing_since",
        "assignment_last_error",
    )

    # Permissions: add, view and the actions; no edit, no delete -------------------------
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Who holds what, until when, changes only through the workflow (revoke, extend).
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return is_admin(request.user)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return is_admin(request.user)

    # Pages -------------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The changelist applies list_select_related only to a queryset without any.
        return (
            super()
            .get_queryset(request)
            .select_related("user", "resource", "access_level", "assignment")
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """The fields of ``search_fields``, each word in any of them (as the admin's own
        search), but looked up in the users', resources' and access levels' tables first:
        the grants are then read newest first, on their index, and checked against those
        ids, where the admin's search compared the joined text of every grant. On
        PostgreSQL each lookup has a trigram index (migration 0016)."""
        condition = Q()
        # Three lookups a word: a search of many words is cut to the first SEARCH_WORDS.
        for word in list(smart_split(search_term))[:SEARCH_WORDS]:
            if word.startswith(('"', "'")) and word[0] == word[-1]:
                word = unescape_string_literal(word)
            if not word:
                continue
            users = User.objects.filter(email__icontains=word)
            resources = Resource.objects.filter(Q(name__icontains=word) | Q(remote_id=word))
            levels = AccessLevel.objects.filter(name__icontains=word)
            condition &= (
                Q(user_id__in=matched_ids(users))
                | Q(resource_id__in=matched_ids(resources))
                | Q(access_level_id__in=matched_ids(levels))
            )
        return queryset.filter(condition), False

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelChoiceField | None:
        if db_field.name == "access_level":
            # Only the levels of the resource chosen (first step, or the form as sent):
            # four resources each offering "Member" made four identical entries.
            data = request.POST if request.method == "POST" else request.GET
            resource_id = chosen_resource_id(data)
            kwargs["queryset"] = (
                AccessLevel.objects.filter(resource_id=resource_id, deleted_at__isnull=True)
                .select_related("resource")
                .order_by("name", "pk")
                if resource_id is not None
                else AccessLevel.objects.none()
            )
            kwargs["form_class"] = ResourceLevelField
            kwargs.setdefault("error_messages", {})["invalid_choice"] = (
                "Choose one of the access levels listed: they are those of the resource above."
            )
            kwargs["help_text"] = (
                "The levels of the resource above. To grant another resource, choose it "
                "and save: the form then lists its levels."
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        widget = getattr(field, "widget", None)
        if db_field.name == "access_level" and isinstance(widget, RelatedFieldWidgetWrapper):
            # A level added from here could belong to any resource; levels come with their
            # resource (its page, or sync).
            widget.can_add_related = False
        return field

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if request.method == "POST" or chosen_resource_id(request.GET) is not None:
            return super().add_view(request, form_url, extra_context)
        return self.choose_resource_view(request)

    def choose_resource_view(self, request: HttpRequest) -> HttpResponse:
        """The first step of adding a grant: a GET form naming the resource, sent back to
        the add page, which then offers that resource's levels."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        data = None
        if "resource" in request.GET:
            # Not a number (the add page took any number): no resource has the id 0, so
            # the form says so, and the autocomplete does not look up the text as an id.
            data = {"resource": "0" if request.GET["resource"] else ""}
        form = ChooseResourceForm(data)
        field = form.fields["resource"]
        assert isinstance(field, forms.ModelChoiceField)
        field.widget = AutocompleteSelect(Grant._meta.get_field("resource"), self.admin_site)
        field.widget.choices = field.choices  # a widget set after the field needs them
        context = {
            **self.admin_site.each_context(request),
            "title": "Add grant",
            "subtitle": "Choose the resource",
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
            # Whatever else the link named (the user, say) goes on to the second step.
            "kept": [(k, v) for k, v in request.GET.items() if k != "resource"],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/access/grant/choose_resource.html", context)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if request.method == "GET":
            failing = grant_service.failing_grants().count()
            if failing:
                url = reverse("admin:access_grant_changelist") + "?failing=yes"
                messages.warning(
                    request,
                    format_html(
                        '{} in AWS — see the <a href="{}">Failing in AWS</a> filter.',
                        f"{plural(failing, 'grant')} keep{'s' if failing == 1 else ''} failing",
                        url,
                    ),
                )
        return super().changelist_view(request, extra_context)

    # Columns and read-only fields ----------------------------------------------------------
    @admin.display(description="user", ordering="user__email")
    def holder(self, obj: Grant) -> str:
        return obj.user.email

    @admin.display(description="access", ordering="resource__name")
    def access(self, obj: Grant) -> str:
        return format_html(
            '{}<div class="grant-level">{} <span class="grant-note">· {}</span></div>',
            obj.resource.name,
            obj.access_level.name,
            obj.resource.get_type_display(),
        )

    @admin.display(description="status", ordering="status")
    def state(self, obj: Grant) -> str:
        return format_html(
            '<span class="grant-status status-{}">{}</span><div>{}</div>'
            '<div class="grant-note">{}</div>',
            obj.status,
            obj.get_status_display(),
            obj.get_propagation_status_display(),
            obj.get_source_display(),
        )

    @admin.display(description="expires", ordering="expires_at")
    def expiry(self, obj: Grant) -> Any:
        if obj.expires_at is None:
            return "until revoked"
        # Compact and sortable by eye: the column stays narrow.
        return date_format(timezone.localtime(obj.expires_at), "Y-m-d H:i")

    @admin.display(description="last error")
    def last_error_preview(self, obj: Grant) -> str:
        if not obj.last_error:
            return ""
        # The whole error is the cell's title and on the grant's page.
        return format_html(
            '<span class="grant-error" title="{}">{}</span>',
            obj.last_error,
            Truncator(obj.last_error).chars(ERROR_PREVIEW),
        )

    @admin.display(description="state in AWS")
    def assignment_state(self, obj: Grant) -> str:
        return obj.assignment.get_status_display() if obj.assignment else "-"

    @admin.display(description="failed attempts in a row")
    def assignment_attempts(self, obj: Grant) -> Any:
        return obj.assignment.attempts if obj.assignment else "-"

    @admin.display(description="next attempt")
    def assignment_next_attempt(self, obj: Grant) -> Any:
        return (obj.assignment.next_attempt_at if obj.assignment else None) or "-"

    @admin.display(description="failing since")
    def assignment_failing_since(self, obj: Grant) -> Any:
        return (obj.assignment.alerted_at if obj.assignment else None) or "-"

    @admin.display(description="last error in AWS")
    def assignment_last_error(self, obj: Grant) -> str:
        return (obj.assignment.last_error if obj.assignment else "") or "-"

    # Direct grants ---------------------------------------------------------------------------
    def save_model(self, request: HttpRequest, obj: Grant, form: ModelForm, change: bool) -> None:  # type: ignore[override]  # grants only
        if change:
            raise PermissionDenied("Grants change through revoke and extend only.")
        data = form.cleaned_data
        # The form checked what create_grant refuses, so GrantError here means a race
        # (the resource deleted meanwhile); the view's transaction then keeps nothing.
        grant = grant_service.create_grant(
            user=data["user"],
            resource=data["resource"],
            access_level=data["access_level"],
            expires_at=data.get("expires_at"),
            source=GrantSource.ADMIN,
            actor=signed_in(request.user),
            reason=(data.get("reason") or "").strip(),
        )
        # The admin goes on with ``obj`` (its history entry, the redirect): make it the grant.
        for field in Grant._meta.concrete_fields:
            setattr(obj, field.attname, getattr(grant, field.attname))
        obj._state.adding = False
        obj._state.db = grant._state.db

    def save_related(
        self, request: HttpRequest, form: ModelForm, formsets: list, change: bool
    ) -> None:
        # create_grant recorded grant.created; a grant has no related rows to save.
        return None

    # Actions ---------------------------------------------------------------------------------
    @admin.action(description="Revoke selected grants", permissions=("revoke",))
    def _too_many(self, request: HttpRequest, queryset: QuerySet) -> bool:
        """Whether an action was asked for on more grants than the list counts ("Select all
        1000 grants" selects every match, however many): refused, with what to do."""
        if queryset[: COUNT_LIMIT + 1].count() <= COUNT_LIMIT:
            return False
        self.message_user(
            request,
            f"More than {COUNT_LIMIT} grants match, more than the list counts: narrow it with "
            "a filter or a search before acting on all of them. Nothing was changed.",
            messages.ERROR,
        )
        return True

    def revoke_grants(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if self._too_many(request, queryset):
            return None
        selected = list(queryset.select_related("user", "resource", "access_level"))
        current = [g for g in selected if g.status in grant_service.ACTIVE_STATUSES]
        current_pks = {g.pk for g in current}
        form = RevokeForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            revoked = refused = 0
            for grant in current:
                try:
                    if grant_service.revoke_grant(
                        grant, actor=signed_in(request.user), reason=form.cleaned_data["reason"]
                    ):
                        revoked += 1
                except PermissionDenied:
                    refused += 1
            message = f"Revoked {plural(revoked, 'grant')}."
            skipped = len(selected) - revoked - refused
            if skipped:
                message += f" Left {plural(skipped, 'grant')} that had already ended."
            if refused:
                message += f" Left {plural(refused, 'grant')} you may not revoke."
            self.message_user(request, message, messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Revoke grants",
            "opts": self.model._meta,
            "form": form,
            "current": current,
            "ended": [g for g in selected if g.pk not in current_pks],
            "selected": selected,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action": "revoke_grants",
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/access/grant/revoke.html", context)

    @admin.action(description="Retry now in AWS", permissions=("retry",))
    def retry_grants(self, request: HttpRequest, queryset: QuerySet) -> None:
        if self._too_many(request, queryset):
            return
        grants = list(
            queryset.filter(
                status__in=grant_service.CURRENT_STATUSES, assignment__isnull=False
            ).select_related("user", "resource", "access_level", "assignment")
        )
        grant_service.retry_now(grants, actor=signed_in(request.user))
        message = f"Queued {plural(len(grants), 'grant')} for another attempt in AWS."
        skipped = queryset.count() - len(grants)
        if skipped:
            message += f" {plural(skipped, 'grant')} had ended or had nothing to apply yet."
        self.message_user(request, message, messages.SUCCESS)
