"""The Admin and Auditor roles: their permissions kept in step after migrate, and role changes."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.management import call_command

from access import permissions
from access.models import Resource
from access.roles import PROJECT_APPS, sync_role_permissions
from access.services.roles import RoleChange, set_user_roles
from audit.models import AuditEvent
from tests.fixtures import make_user


def codenames(group_name: str) -> set[str]:
    return {
        f"{app}.{code}"
        for app, code in Group.objects.get(name=group_name).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


@pytest.mark.django_db
def test_admin_has_every_permission_of_the_project_and_auth():
    expected = {
        f"{app}.{code}"
        for app, code in Permission.objects.filter(
            content_type__app_label__in=(*PROJECT_APPS, "auth")
        ).values_list("content_type__app_label", "codename")
    }
    assert codenames("Admin") == expected
    assert {"access.change_resource", "audit.view_auditevent", "auth.view_group"} <= expected


@pytest.mark.django_db
def test_auditor_has_only_the_view_permissions_of_the_project():
    found = codenames("Auditor")
    assert "access.view_grant" in found
    assert "audit.view_auditevent" in found
    assert all(code.split(".")[1].startswith("view_") for code in found)
    assert not any(code.startswith("auth.") for code in found)


@pytest.mark.django_db
def test_a_permission_added_later_reaches_the_roles_at_the_next_migrate():
    # What a model added in a later release brings: a new permission after the
    # roles were first set up.
    content_type = ContentType.objects.get_for_model(Resource)
    new = Permission.objects.create(
        content_type=content_type, codename="view_resource_history", name="Can view history"
    )
    Group.objects.get(name="Auditor").permissions.remove(
        Permission.objects.get(codename="view_grant")
    )
    call_command("migrate", verbosity=0)
    assert "access.view_resource_history" in codenames("Admin")
    assert "access.view_resource_history" in codenames("Auditor")
    assert "access.view_grant" in codenames("Auditor")
    assert new.pk in Group.objects.get(name="Admin").permissions.values_list("pk", flat=True)


@pytest.mark.django_db
def test_the_sync_is_idempotent_and_recreates_missing_roles():
    Group.objects.filter(name="Auditor").delete()
    sync_role_permissions()
    first = (codenames("Admin"), codenames("Auditor"))
    sync_role_permissions()
    assert (codenames("Admin"), codenames("Auditor")) == first
    assert Group.objects.filter(name__in=["Admin", "Auditor"]).count() == 2


def test_the_role_decides_not_the_django_permissions(personas):
    # Authorization reads the group names; the permissions only describe the roles.
    Group.objects.get(name="Admin").permissions.clear()
    assert permissions.is_admin(personas.admin)
    personas.outsider.user_permissions.set(Permission.objects.all())
    assert not permissions.is_admin(personas.outsider)


# set_user_roles --------------------------------------------------------------------------
def test_set_user_roles_records_each_role_granted_and_revoked(personas):
    change = set_user_roles(personas.auditor, ["admin"], actor=personas.admin)
    assert change == RoleChange(granted=("Admin",), revoked=("Auditor",))
    assert permissions.is_admin(personas.auditor)
    events = list(AuditEvent.objects.filter(action__startswith="role.").order_by("id"))
    assert [(e.action, e.details["role"], e.actor) for e in events] == [
        ("role.granted", "Admin", personas.admin),
        ("role.revoked", "Auditor", personas.admin),
    ]
    assert {e.target_id for e in events} == {str(personas.auditor.pk)}


def test_set_user_roles_records_nothing_when_nothing_changes(personas):
    assert set_user_roles(personas.auditor, "Auditor", actor=personas.admin) == (
        RoleChange(granted=(), revoked=())
    )
    assert not AuditEvent.objects.filter(action__startswith="role.").exists()


def test_set_user_roles_refuses_an_unknown_role_and_changes_nothing(personas):
    with pytest.raises(ValidationError, match="Unknown role 'Owner'"):
        set_user_roles(personas.auditor, "Admin, Owner", actor=personas.admin)
    assert list(personas.auditor.groups.values_list("name", flat=True)) == ["Auditor"]


def test_an_admin_cannot_take_away_their_own_admin_role(personas):
    with pytest.raises(ValidationError, match="You cannot remove your own Admin role"):
        set_user_roles(personas.admin, [], actor=personas.admin)
    assert permissions.is_admin(personas.admin)
    assert not AuditEvent.objects.filter(action="role.revoked").exists()


def test_another_admin_can_take_the_admin_role_away(personas):
    other = make_user("second.admin@example.com", roles=("Admin",))
    set_user_roles(personas.admin, [], actor=other)
    event = AuditEvent.objects.get(action="role.revoked")
    assert (event.actor, event.target_id) == (other, str(personas.admin.pk))
    personas.admin.refresh_from_db()
    assert not permissions.is_admin(personas.admin)
