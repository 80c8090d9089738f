"""What every Portcullis ModelAdmin shares: the Admin role decides, and every edit is audited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse

from access.models import Grant
from access.permissions import is_admin, signed_in
from access.services import change_log

# Shown on the delete confirmation page for each grant that blocks a deletion.
MAX_PROTECTED_SHOWN = 20


class AdminRoleMixin:
    """Every permission question of the admin is answered by ``access.permissions``."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_admin(request.user)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        # ModelAdmin passes (request), InlineModelAdmin (request, obj).
        return is_admin(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_admin(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_admin(request.user)


class ReadOnlyAdminMixin:
    """Viewed, never added or changed in the admin (deletion: see HistoryAdminMixin)."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ActorFormMixin:
    """The admin's form learns who is using it (``form.actor``), for the rules that depend
    on who edits: nobody grants themselves access, only admins relax a rule."""

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        form.actor = signed_in(request.user)  # a class made for this request
        return form


class AuditedAdminMixin:
    """Records every add, change and delete made in the admin, in the view's transaction.

    The values before an edit are read from the database in ``save_model`` (the form has
    already changed the instance in memory), the values after once the many-to-many
    fields are saved. Inline objects get their own events, except the reverse relations
    named in ``audit_related``, which are part of the parent's values instead (a rule's
    stages belong to the rule).
    """

    audit_related: tuple[str, ...] = ()

    # Saving ---------------------------------------------------------------------
    def save_model(
        self, request: HttpRequest, obj: models.Model, form: ModelForm, change: bool
    ) -> None:
        before = None
        if change and obj.pk is not None:
            original = type(obj)._default_manager.get(pk=obj.pk)
            before = change_log.snapshot(original, related=self.audit_related)
        obj._audit_before = before  # type: ignore[attr-defined]  # read by audit_saved
        super().save_model(request, obj, form, change)  # type: ignore[misc]

    def save_related(
        self, request: HttpRequest, form: ModelForm, formsets: list, change: bool
    ) -> None:
        obj = form.instance
        form.save_m2m()
        # The parent's event comes first, unless its values include inline objects.
        if not self.audit_related:
            self.audit_saved(request, obj)
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)
        if self.audit_related:
            self.audit_saved(request, obj)

    def audit_saved(self, request: HttpRequest, obj: models.Model) -> None:
        after = change_log.snapshot(obj, related=self.audit_related)
        before = getattr(obj, "_audit_before", None)
        if before is None:
            change_log.record_created(obj, actor=signed_in(request.user), after=after)
        else:
            change_log.record_updated(
                obj, actor=signed_in(request.user), before=before, after=after
            )

    def save_formset(
        self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        if self._is_part_of_parent(formset):
            super().save_formset(request, form, formset, change)  # type: ignore[misc]
            return
        formset.save(commit=False)
        model = formset.model
        touched = [o.pk for o in formset.deleted_objects] + [
            o.pk for o, _ in formset.changed_objects
        ]
        originals = {
            o.pk: change_log.snapshot(o) for o in model._default_manager.filter(pk__in=touched)
        }
        with transaction.atomic():
            # Deletions first, so a row can be removed and re-added in one save.
            for obj in formset.deleted_objects:
                pk, label = obj.pk, str(obj)
                cascaded = change_log.cascade_snapshot(obj)
                obj.delete()
                obj.pk = pk
                change_log.record_deleted(
                    obj,
                    actor=signed_in(request.user),
                    before=originals.get(pk, {}),
                    pk=pk,
                    label=label,
                    cascaded=cascaded,
                )
            for obj, _fields in formset.changed_objects:
                obj.save()
                change_log.record_updated(
                    obj,
                    actor=signed_in(request.user),
                    before=originals.get(obj.pk, {}),
                    after=change_log.snapshot(obj),
                )
            for obj in formset.new_objects:
                obj.save()
                change_log.record_created(
                    obj, actor=signed_in(request.user), after=change_log.snapshot(obj)
                )
            formset.save_m2m()

    def _is_part_of_parent(self, formset: BaseInlineFormSet) -> bool:
        fk = getattr(formset, "fk", None)
        return fk is not None and fk.remote_field.get_accessor_name() in self.audit_related

    # Deleting -------------------------------------------------------------------
    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        pk, label = obj.pk, str(obj)
        with transaction.atomic():
            before = change_log.snapshot(obj, related=self.audit_related)
            # The rows the deletion takes with it (a resource's levels, rules, grants...).
            cascaded = change_log.cascade_snapshot(obj)
            super().delete_model(request, obj)  # type: ignore[misc]
            obj.pk = pk
            change_log.record_deleted(
                obj,
                actor=signed_in(request.user),
                before=before,
                pk=pk,
                label=label,
                cascaded=cascaded,
            )

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        # The changelist's "delete selected" runs outside the view's transaction: make
        # the deletion and its events (one per object) one unit here.
        with transaction.atomic():
            objects = list(queryset)
            states = [
                (
                    obj,
                    obj.pk,
                    str(obj),
                    change_log.snapshot(obj, related=self.audit_related),
                    change_log.cascade_snapshot(obj),
                )
                for obj in objects
            ]
            super().delete_queryset(request, queryset)  # type: ignore[misc]
            for obj, pk, label, before, cascaded in states:
                obj.pk = pk
                change_log.record_deleted(
                    obj,
                    actor=signed_in(request.user),
                    before=before,
                    pk=pk,
                    label=label,
                    cascaded=cascaded,
                )


class GrantProtectionMixin:
    """Refuses to delete rows whose deletion would drop current grants.

    Deleting a grant row does not take the access away in AWS; current grants end
    through revocation, which also removes the access there.
    """

    #: The lookup from Grant to the objects being deleted, e.g. "resource__in".
    grants_lookup: str = ""

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        deletable, model_count, perms_needed, protected = super().get_deleted_objects(  # type: ignore[misc]
            objs, request
        )
        if self.grants_lookup:
            current = (
                Grant.objects.current()
                .filter(**{self.grants_lookup: list(objs)})
                .select_related("user", "resource", "access_level")
                .order_by("id")
            )
            count = current.count()
            if count:
                protected = list(protected) + [
                    f"Current grant (revoke it first): {grant}"
                    for grant in current[:MAX_PROTECTED_SHOWN]
                ]
                if count > MAX_PROTECTED_SHOWN:
                    protected.append(f"… and {count - MAX_PROTECTED_SHOWN} more current grants")
        return deletable, model_count, perms_needed, protected


class HistoryAdminMixin:
    """Rows that are history (grants, requests, assignments): never deleted on their own
    pages. The Admin role keeps the delete permission so that deleting a resource or an
    app, which refuses while anyone currently holds it, still takes these rows with it."""

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        actions.pop("delete_selected", None)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        raise PermissionDenied("These rows are history: they are not deleted on their own.")

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        context["show_delete"] = False
        return super().render_change_form(  # type: ignore[misc]
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )


class PortcullisModelAdmin(AdminRoleMixin, AuditedAdminMixin, admin.ModelAdmin):
    """Base of the project's ModelAdmins: Admin role only, audited, cheap on big tables."""

    show_full_result_count = False
    list_per_page = 50


class PortcullisTabularInline(AdminRoleMixin, admin.TabularInline):
    extra = 0


class PortcullisStackedInline(AdminRoleMixin, admin.StackedInline):
    extra = 0
