"""Admin for people: users (with CSV import and export), groups, roles and API tokens."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV

from access import permissions, tokens
from access.admin.base import (
    AdminRoleMixin,
    AuditedAdminMixin,
    PortcullisModelAdmin,
    ReadOnlyAdminMixin,
)
from access.models import ApiToken, User, UserGroup
from access.permissions import ADMIN_ROLE, ROLES, is_admin, signed_in
from access.services.grants import offboard_user
from access.services.roles import set_user_roles
from access.services.usernames import default_username
from access.user_csv import UserResource
from audit.services import record_event
from config.csp import IMPORT_EXPORT_EXPORT_PAGE

ROLES_HELP = (
    "Admin: this admin site, request rules and owners. Auditor: the audit log and access "
    "reviews. Everyone can request access; approvers are resource owners."
)


class RoleListFilter(admin.SimpleListFilter):
    title = "role"
    parameter_name = "role"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(role, role) for role in ROLES] + [("none", "No role")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value in ROLES:
            return queryset.filter(groups__name=value)
        if value == "none":
            return queryset.exclude(groups__name__in=ROLES)
        return queryset


class RolesCheckRequesterMixin:
    """Refuses, on the form, an admin unticking their own Admin role."""

    editing_user: User | None = None  # set per request by UserAdmin.get_form
    # The form's, for the checks below.
    cleaned_data: dict[str, Any]
    instance: User

    def clean_groups(self) -> Any:
        groups = self.cleaned_data.get("groups")
        instance = self.instance
        editor = self.editing_user
        if (
            instance.pk is not None
            and editor is not None
            and instance.pk == editor.pk
            and ADMIN_ROLE in permissions.role_names(instance)
            and ADMIN_ROLE not in {g.name for g in groups or []}
        ):
            raise forms.ValidationError(
                "You cannot remove your own Admin role; ask another admin to do it."
            )
        return groups


class UserAddForm(RolesCheckRequesterMixin, AdminUserCreationForm):
    """New user: the username may be left empty and is then made from the email."""

    class Meta(AdminUserCreationForm.Meta):  # type: ignore[name-defined]  # not in django-stubs
        model = User
        fields = ("email", "username")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True
        self.fields["username"].required = False
        self.fields["username"].help_text = "Optional: made from the email address when left empty."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # Form.clean returns cleaned_data
        email = (cleaned.get("email") or "").strip().lower()
        if email and not cleaned.get("username"):
            cleaned["username"] = default_username(email)
        return cleaned


class UserEditForm(RolesCheckRequesterMixin, UserChangeForm):
    class Meta(UserChangeForm.Meta):  # type: ignore[name-defined]  # not in django-stubs
        model = User
        fields = "__all__"


@admin.register(User)
# import-export's stubs type model and change_list_template unlike Django's own.
class UserAdmin(AdminRoleMixin, AuditedAdminMixin, ImportExportMixin, DjangoUserAdmin):  # type: ignore[misc]
    form = UserEditForm
    add_form = UserAddForm
    resource_classes = (UserResource,)
    import_formats = [CSV]
    export_formats = [CSV]
    show_full_result_count = False
    list_per_page = 50
    list_display = (
        "email",
        "username",
        "first_name",
        "last_name",
        "title",
        "department",
        "manager",
        "roles",
        "is_active",
    )
    list_filter = ("is_active", RoleListFilter, "department")
    search_fields = ("email", "username", "first_name", "last_name")
    ordering = ("email",)
    list_select_related = ("manager",)
    autocomplete_fields = ("manager",)
    filter_horizontal = ()
    readonly_fields = ("is_superuser", "last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "username", "password")}),
        ("Person", {"fields": ("first_name", "last_name", "title", "department", "manager")}),
        ("Roles and status", {"fields": ("groups", "is_active", "is_superuser")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "email",
                    "username",
                    "first_name",
                    "last_name",
                    "title",
                    "department",
                    "manager",
                    "groups",
                    "usable_password",
                    "password1",
                    "password2",
                ),
            },
        ),
    )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # People are deactivated, not deleted: deleting would drop their grants without
        # revoking them in AWS, and the audit log and reviews refer to them.
        return False

    def has_import_permission(self, request: HttpRequest) -> bool:
        return is_admin(request.user)

    def has_export_permission(self, request: HttpRequest) -> bool:
        return is_admin(request.user)

    # The page, or the file once the form is posted: the stubs say a TemplateResponse only.
    def export_action(self, request: HttpRequest) -> HttpResponse:  # type: ignore[override]
        response = super().export_action(request)
        # The page's template writes an inline handler and styles: allowed by their hashes.
        response._csp_update = IMPORT_EXPORT_EXPORT_PAGE  # type: ignore[attr-defined]
        return response

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "groups", queryset=Group.objects.filter(name__in=ROLES), to_attr="role_groups"
                )
            )
        )

    @admin.display(description="roles")
    def roles(self, obj: User) -> str:
        groups = getattr(obj, "role_groups", None)
        if groups is None:
            return ", ".join(sorted(permissions.role_names(obj)))
        return ", ".join(sorted(g.name for g in groups))

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type:
        form = cast(
            "type[RolesCheckRequesterMixin]",
            super().get_form(request, obj, change=change, **kwargs),
        )
        form.editing_user = signed_in(request.user)
        return form

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "groups":
            kwargs["queryset"] = Group.objects.filter(name__in=ROLES).order_by("name")
            kwargs["widget"] = forms.CheckboxSelectMultiple
            field = super().formfield_for_manytomany(db_field, request, **kwargs)
            assert field is not None  # a form field for every many-to-many here
            field.label = "Roles"
            field.help_text = ROLES_HELP
            return field
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool
    ) -> None:
        # Roles change through set_user_roles, which records role.granted/role.revoked;
        # taken out of cleaned_data so the form's own m2m save leaves them alone.
        roles = form.cleaned_data.pop("groups", None)
        before = getattr(form.instance, "_audit_before", None) or {}
        super().save_related(request, form, formsets, change)
        if roles is not None:
            set_user_roles(form.instance, roles, actor=signed_in(request.user))
        if before.get("is_active") and not form.instance.is_active:
            ended = offboard_user(form.instance, actor=signed_in(request.user))
            if ended:
                self.message_user(
                    request,
                    f"{form.instance.email} is deactivated: {ended} current grant(s) are being "
                    "revoked in AWS and their pending requests canceled.",
                )

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        if request.method != "POST":
            return super().user_change_password(request, id, form_url)
        # Django's view is not atomic; the change and its event must be.
        with transaction.atomic():
            request._portcullis_password_change = True  # type: ignore[attr-defined]  # for log_change
            return super().user_change_password(request, id, form_url)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if getattr(request, "_portcullis_password_change", False):
            record_event(
                "user.password_changed",
                actor=signed_in(request.user),
                target=obj,
                # "sign_in", not a key naming the password: the log redacts those.
                details={"sign_in": "password" if obj.has_usable_password() else "sso only"},
            )
            tokens.revoke_user_tokens(
                obj, actor=signed_in(request.user), reason="An admin changed the user's password."
            )
        return super().log_change(request, obj, message)


# Groups of people --------------------------------------------------------------
@admin.register(UserGroup)
class UserGroupAdmin(PortcullisModelAdmin):
    list_display = ("name", "source", "member_count", "admin_count", "created_at")
    list_filter = ("source",)
    search_fields = ("name",)
    autocomplete_fields = ("members", "admins")
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_count=Count("members", distinct=True),
                admin_count=Count("admins", distinct=True),
            )
        )

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj: UserGroup) -> int:
        return obj.member_count  # type: ignore[attr-defined]  # annotated in get_queryset

    @admin.display(description="admins", ordering="admin_count")
    def admin_count(self, obj: UserGroup) -> int:
        return obj.admin_count  # type: ignore[attr-defined]  # annotated in get_queryset


# Roles (Django groups), shown read-only ------------------------------------------
admin.site.unregister(Group)


@admin.register(Group)
class RoleAdmin(ReadOnlyAdminMixin, AdminRoleMixin, admin.ModelAdmin):
    """The roles are fixed (Admin, Auditor) and given to people on the user page."""

    list_display = ("name", "people")
    search_fields = ("name",)
    fields = ("name", "permissions")
    readonly_fields = ("name", "permissions")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(people=Count("user", filter=Q(user__is_active=True)))
        )

    @admin.display(description="active people", ordering="people")
    def people(self, obj: Group) -> int:
        return obj.people  # type: ignore[attr-defined]  # annotated in get_queryset

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# API tokens ---------------------------------------------------------------------
@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdminMixin, AdminRoleMixin, admin.ModelAdmin):
    """Tokens are created by their holders; here admins see them and revoke them."""

    show_full_result_count = False
    list_display = (
        "name",
        "user",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "status",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "=prefix", "user__email")
    list_select_related = ("user",)
    fields = list_display
    readonly_fields = fields
    actions = ("revoke_tokens",)

    @admin.display(description="status")
    def status(self, obj: ApiToken) -> str:
        return tokens.token_status(obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoked, never deleted: the list shows which tokens existed and when they ended.
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return is_admin(request.user)

    @admin.action(description="Revoke selected API tokens", permissions=("revoke",))
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            tokens.revoke_api_token(token, signed_in(request.user))
            revoked += 1
        skipped = queryset.count() - revoked
        message = f"Revoked {revoked} API token{'s' if revoked != 1 else ''}."
        if skipped:
            message += f" {skipped} {'was' if skipped == 1 else 'were'} already revoked."
        self.message_user(request, message, messages.SUCCESS)
