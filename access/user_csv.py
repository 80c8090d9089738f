"""CSV import and export of users with their managers and roles (django-import-export).

Columns: email, first_name, last_name, username (optional: made from the email),
title, department, manager_email, roles (optional, e.g. "Auditor" or "Admin, Auditor").

A user's manager may appear anywhere in the file, before or after their reports, so
managers are set once every row is saved. A manager email that is neither in the file
nor an existing user makes that row invalid, and an import with any invalid row writes
nothing. Imported users get no usable password: they sign in by single sign-on, or set
a password through "forgot password". Every created or updated user and every role
change is recorded in the audit log, in the import's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tablib
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from import_export import fields, resources, widgets
from import_export.resources import Diff
from import_export.results import Result

from access import permissions
from access.models import User
from access.permissions import ROLES
from access.services.change_log import record_created, record_updated, snapshot
from access.services.roles import parse_roles, set_user_roles
from access.services.usernames import default_username

COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "username",
    "title",
    "department",
    "manager_email",
    "roles",
)
# Spreadsheets run a cell starting with one of these as a formula: exported text
# cells get a leading apostrophe, which an import takes off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _strip_neutraliser(value: str) -> str:
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


class _PreviewDiff(Diff):
    """The import preview's before and after of a row, through the resource's dehydrate
    methods: import-export reads the fields alone, and the manager and roles columns
    have no model attribute, so they showed blank."""

    def __init__(self, resource: Any, instance: Any, new: bool) -> None:
        super().__init__(resource, instance, new)
        self.left = _preview_values(resource, instance)

    def compare_with(self, resource: Any, instance: Any, dry_run: bool = False) -> None:
        self.right = _preview_values(resource, instance)


def _preview_values(resource: Any, instance: Any) -> list[Any]:
    return [resource.preview_value(f, instance) for f in resource.get_import_fields()]


@dataclass
class _ImportedUser:
    """What a saved row still needs once every row is in: its manager, roles and audit."""

    user: User
    row_number: int
    before: dict[str, Any] | None
    manager_email: str | None  # None: no manager_email column, the manager is kept
    roles: list[str] | None  # None: no roles column, the roles are kept


class UserResource(resources.ModelResource):
    """Users with their managers (by email) and roles, keyed by email."""

    email = fields.Field(attribute="email", column_name="email", widget=widgets.CharWidget())
    username = fields.Field(
        attribute="username", column_name="username", widget=widgets.CharWidget()
    )
    manager_email = fields.Field(column_name="manager_email")
    roles = fields.Field(column_name="roles")

    class Meta:
        model = User
        fields = COLUMNS
        import_order = COLUMNS
        export_order = COLUMNS
        import_id_fields = ("email",)
        clean_model_instances = True
        use_transactions = True
        skip_unchanged = True
        report_skipped = True

    @classmethod
    def get_diff_class(cls) -> type[Diff]:
        return _PreviewDiff

    def preview_value(self, field: fields.Field, instance: User | None) -> Any:
        if instance is None:
            return ""
        dehydrate = getattr(self, f"dehydrate_{field.column_name}", None)
        return dehydrate(instance) if dehydrate is not None else field.export(instance)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._file_emails: dict[str, int] = {}
        self._saved: list[_ImportedUser] = []

    # Import --------------------------------------------------------------------
    def import_data(self, dataset: tablib.Dataset, *args: Any, **kwargs: Any) -> Result:
        # The admin's confirm step imports without rolling back on invalid rows; a
        # user file is all or nothing, so invalid rows always roll the import back.
        kwargs["rollback_on_validation_errors"] = True
        return super().import_data(dataset, *args, **kwargs)

    def before_import(self, dataset: tablib.Dataset, **kwargs: Any) -> None:
        self._file_emails = {}
        self._saved = []
        headers = [str(h or "").strip().lower() for h in (dataset.headers or [])]
        rows = [
            [_strip_neutraliser(str(v).strip()) if v is not None else "" for v in row]
            for row in dataset
        ]
        if "email" in headers:
            at = headers.index("email")
            for row in rows:
                row[at] = row[at].lower()
        # Rewritten in place: the import goes on with this same dataset object.
        del dataset[0 : len(dataset)]
        dataset.headers = headers
        for row in rows:
            dataset.append(row)
        if "email" in headers:
            for number, row in enumerate(rows, 1):
                self._file_emails.setdefault(row[headers.index("email")], number)

    def get_instance(self, instance_loader: Any, row: dict[str, Any]) -> User | None:
        email = (row.get("email") or "").strip()
        if not email:
            return None
        return User.objects.select_related("manager").filter(email__iexact=email).first()

    def init_instance(self, row: dict[str, Any] | None = None) -> User:
        user = User()
        # Imported people sign in by single sign-on or reset their password.
        user.set_unusable_password()
        return user

    def after_init_instance(
        self, instance: User, new: bool, row: dict[str, Any], **kwargs: Any
    ) -> None:
        instance._import_before = None if new else snapshot(instance)
        instance._import_old_username = "" if new else instance.username
        instance._import_old_roles = set() if new else set(permissions.role_names(instance))

    def import_instance(self, instance: User, row: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[Any]] = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        email = (row.get("email") or "").strip().lower()
        row_number = kwargs.get("row_number")
        first = self._file_emails.get(email)
        if not email:
            errors.setdefault("email", []).append("Every row needs an email address.")
        elif first is not None and row_number is not None and first != row_number:
            errors.setdefault("email", []).append(
                f"{email} is already on row {first} of this file; each user appears once."
            )
        if not instance.username:
            instance.username = instance._import_old_username or default_username(
                email, exclude_pk=instance.pk
            )

        instance._import_manager_email = None
        if "manager_email" in row:
            manager_email = (row.get("manager_email") or "").strip().lower()
            problem = self._manager_problem(email, manager_email)
            if problem:
                errors.setdefault("manager_email", []).append(problem)
            instance._import_manager_email = manager_email

        instance._import_roles = None
        if "roles" in row:
            try:
                instance._import_roles = parse_roles(row.get("roles") or "")
            except ValidationError as exc:
                errors.setdefault("roles", []).extend(exc.messages)
        if errors:
            raise ValidationError(errors)

    def _manager_problem(self, email: str, manager_email: str) -> str:
        if not manager_email:
            return ""
        if manager_email == email:
            return f"{email} cannot be their own manager."
        if manager_email in self._file_emails:
            return ""
        if User.objects.filter(email__iexact=manager_email).exists():
            return ""
        return (
            f"The manager {manager_email} is neither in this file nor an existing user: "
            "add a row for them, or correct the email."
        )

    def skip_row(
        self,
        instance: User,
        original: User | None,
        row: dict[str, Any],
        import_validation_errors: dict[str, Any] | None = None,
    ) -> bool:
        if not super().skip_row(instance, original, row, import_validation_errors):
            return False
        if instance._import_manager_email is not None:
            current = instance.manager.email if instance.manager else ""
            if current.lower() != instance._import_manager_email:
                return False
        return not (
            instance._import_roles is not None
            and set(instance._import_roles) != instance._import_old_roles
        )

    def after_save_instance(self, instance: User, row: dict[str, Any], **kwargs: Any) -> None:
        self._saved.append(
            _ImportedUser(
                user=instance,
                row_number=kwargs.get("row_number") or 0,
                before=instance._import_before,
                manager_email=instance._import_manager_email,
                roles=instance._import_roles,
            )
        )

    def after_import(self, dataset: tablib.Dataset, result: Result, **kwargs: Any) -> None:
        super().after_import(dataset, result, **kwargs)
        if result.has_errors() or result.has_validation_errors():
            return  # The import is rolled back: nothing to finish or to record.
        actor = kwargs.get("user")
        wanted = {s.manager_email for s in self._saved if s.manager_email}
        managers = {u.email.lower(): u for u in User.objects.filter(email__in=wanted)}
        for saved in self._saved:
            user = saved.user
            if saved.manager_email is not None:
                manager = managers.get(saved.manager_email) if saved.manager_email else None
                if saved.manager_email and manager is None:
                    # Checked per row already; only a concurrent delete gets here.
                    raise ValidationError(
                        f"Row {saved.row_number}: the manager {saved.manager_email} no longer exists."
                    )
                if user.manager_id != (manager.pk if manager else None):
                    user.manager = manager
                    user.save(update_fields=["manager"])
            after = snapshot(user)
            if saved.before is None:
                record_created(user, actor=actor, after=after)
            else:
                record_updated(user, actor=actor, before=saved.before, after=after)
            if saved.roles is not None:
                set_user_roles(user, saved.roles, actor=actor)

    # Export --------------------------------------------------------------------
    def filter_export(self, queryset: QuerySet, **kwargs: Any) -> QuerySet:
        return queryset.select_related("manager").prefetch_related(
            Prefetch("groups", to_attr="export_roles")
        )

    # During an import, managers and roles are set only once every row is saved
    # (after_import), after the preview has compared each row: the row's own values are
    # what the user will have.
    def dehydrate_manager_email(self, user: User) -> str:
        pending: str | None = getattr(user, "_import_manager_email", None)
        if pending is not None:
            return pending
        return user.manager.email if user.manager_id and user.manager else ""

    def dehydrate_roles(self, user: User) -> str:
        pending: list[str] | None = getattr(user, "_import_roles", None)
        if pending is not None:
            return ", ".join(sorted(pending))
        if user.pk is None:
            return ""  # a new user, before the import sets anything
        groups = getattr(user, "export_roles", None)
        names = (
            [g.name for g in groups]
            if groups is not None
            else list(user.groups.values_list("name", flat=True))
        )
        return ", ".join(sorted(n for n in names if n in ROLES))

    def export_field(self, field: fields.Field, instance: User, **kwargs: Any) -> Any:
        return neutralise_formula(super().export_field(field, instance, **kwargs))
