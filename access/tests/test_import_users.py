"""Importing users with their managers and roles from CSV, and exporting them."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from access.models import User
from access.user_csv import COLUMNS, UserResource
from audit.models import AuditEvent

DIFF_STYLE_DEL = ' style="background:#ffe6e6;"'
DIFF_STYLE_INS = ' style="background:#e6ffe6;"'
HEADER = "email,first_name,last_name,username,title,department,manager_email,roles\n"


def run_import(text: str, actor: Any, *, dry_run: bool = False) -> Any:
    dataset = tablib.Dataset().load(text, format="csv")
    return UserResource().import_data(dataset, dry_run=dry_run, user=actor)


def row_errors(result: Any) -> list[str]:
    messages = [str(e.error) for e in result.base_errors]
    for row in result.invalid_rows:
        for field, errors in row.error_dict.items():
            messages += [f"row {row.number} {field}: {e}" for e in errors]
    for row in result.row_errors():
        messages += [f"row {row[0]}: {e.error}" for e in row[1]]
    return messages


def actions() -> list[tuple[str, str]]:
    return list(AuditEvent.objects.order_by("id").values_list("action", "target_label"))


# Managers ----------------------------------------------------------------------------
@pytest.mark.parametrize("manager_first", [True, False], ids=["manager-first", "manager-last"])
def test_it_sets_managers_whichever_comes_first_in_the_file(personas, manager_first):
    manager = "boss@example.com,Bea,Boss,,Director,Eng,,\n"
    report = "dev@example.com,Dan,Dev,,Engineer,Eng,boss@example.com,\n"
    text = HEADER + (manager + report if manager_first else report + manager)
    result = run_import(text, personas.admin)
    assert not result.has_errors() and not result.has_validation_errors(), row_errors(result)
    dev = User.objects.get(email="dev@example.com")
    assert dev.manager == User.objects.get(email="boss@example.com")
    assert (dev.first_name, dev.title, dev.department, dev.username) == (
        "Dan",
        "Engineer",
        "Eng",
        "dev",
    )
    created = AuditEvent.objects.get(action="user.created", target_id=str(dev.pk))
    assert created.actor == personas.admin
    assert created.details["after"]["manager"] == dev.manager_id


def test_a_manager_may_be_an_existing_user(personas):
    result = run_import(
        HEADER + "new@example.com,N,N,,,,MIA.MANAGER@example.com,\n", personas.admin
    )
    assert not result.has_validation_errors(), row_errors(result)
    assert User.objects.get(email="new@example.com").manager == personas.manager


def test_an_unknown_manager_is_an_error_naming_the_email_and_nothing_is_written(personas):
    before = AuditEvent.objects.count()
    users = User.objects.count()
    text = (
        HEADER
        + "ok@example.com,O,K,,,,,Auditor\n"
        + "lost@example.com,L,O,,,,nobody@example.com,\n"
    )
    result = run_import(text, personas.admin)
    assert result.has_validation_errors()
    assert row_errors(result) == [
        "row 2 manager_email: The manager nobody@example.com is neither in this file nor an "
        "existing user: add a row for them, or correct the email."
    ]
    assert User.objects.count() == users
    assert AuditEvent.objects.count() == before


def test_a_user_cannot_manage_themselves(personas):
    result = run_import(HEADER + "me@example.com,M,E,,,,me@example.com,\n", personas.admin)
    assert row_errors(result) == [
        "row 1 manager_email: me@example.com cannot be their own manager."
    ]
    assert not User.objects.filter(email="me@example.com").exists()


def test_an_empty_manager_cell_clears_the_manager_and_a_missing_column_keeps_it(personas):
    run_import("email,title\nrob.requester@example.com,Engineer\n", personas.admin)
    personas.requester.refresh_from_db()
    assert (personas.requester.title, personas.requester.manager) == ("Engineer", personas.manager)
    run_import("email,manager_email\nrob.requester@example.com,\n", personas.admin)
    personas.requester.refresh_from_db()
    assert personas.requester.manager is None
    event = AuditEvent.objects.filter(action="user.updated").latest("id")
    assert event.details["changes"] == {"manager": {"from": personas.manager.pk, "to": None}}


# Roles ---------------------------------------------------------------------------------
def test_roles_are_assigned_and_recorded(personas):
    text = HEADER + 'aud@example.com,A,U,,,,,Auditor\nboth@example.com,B,O,,,,,"Admin, auditor"\n'
    result = run_import(text, personas.admin)
    assert not result.has_validation_errors(), row_errors(result)
    assert list(
        User.objects.get(email="aud@example.com").groups.values_list("name", flat=True)
    ) == ["Auditor"]
    both = User.objects.get(email="both@example.com")
    assert sorted(both.groups.values_list("name", flat=True)) == ["Admin", "Auditor"]
    granted = AuditEvent.objects.filter(action="role.granted", target_id=str(both.pk))
    assert sorted(e.details["role"] for e in granted) == ["Admin", "Auditor"]
    assert all(e.actor == personas.admin for e in granted)
    # Each user is recorded before their roles.
    assert [a for a, _ in actions()] == [
        "user.created",
        "role.granted",
        "user.created",
        "role.granted",
        "role.granted",
    ]


def test_a_roles_cell_replaces_the_roles_and_records_the_revocation(personas):
    result = run_import("email,roles\naud.auditor@example.com,\n", personas.admin)
    assert not result.has_validation_errors(), row_errors(result)
    assert not personas.auditor.groups.exists()
    revoked = AuditEvent.objects.get(action="role.revoked")
    assert (revoked.target_id, revoked.details) == (str(personas.auditor.pk), {"role": "Auditor"})


def test_an_unknown_role_is_an_error_naming_it(personas):
    result = run_import(HEADER + "x@example.com,X,X,,,,,Superhero\n", personas.admin)
    assert row_errors(result) == [
        "row 1 roles: Unknown role 'Superhero': roles are Admin, Auditor (or empty for none)."
    ]
    assert not User.objects.filter(email="x@example.com").exists()


def test_an_admin_cannot_import_away_their_own_admin_role(personas):
    result = run_import("email,roles\nada.admin@example.com,Auditor\n", personas.admin)
    assert "You cannot remove your own Admin role" in " ".join(row_errors(result))
    assert list(personas.admin.groups.values_list("name", flat=True)) == ["Admin"]
    assert not AuditEvent.objects.filter(action__startswith="role.").exists()


# Users ---------------------------------------------------------------------------------
def test_imported_users_have_no_usable_password_and_a_username_from_their_email(personas):
    text = HEADER + "Olga.Owner+2@Example.com,O,O,,,,,\nolga.owner@other.example,O,O,,,,,\n"
    result = run_import(text, personas.admin)
    assert not result.has_validation_errors(), row_errors(result)
    first = User.objects.get(email="olga.owner+2@example.com")
    second = User.objects.get(email="olga.owner@other.example")
    assert not first.has_usable_password()
    assert first.username == "olga.owner+2"
    # "olga.owner" is the approver persona's username: the whole email is used instead.
    assert second.username == "olga.owner@other.example"


def test_reimporting_the_same_file_changes_and_records_nothing(personas):
    text = HEADER + "boss@example.com,Bea,Boss,,Director,Eng,,Auditor\n"
    run_import(text, personas.admin)
    count = AuditEvent.objects.count()
    result = run_import(text, personas.admin)
    assert [row.import_type for row in result.rows] == ["skip"]
    assert AuditEvent.objects.count() == count


def test_an_update_is_recorded_with_the_changed_fields(personas):
    result = run_import(
        "email,title,department\nrob.requester@example.com,SRE,Platform\n", personas.admin
    )
    assert [row.import_type for row in result.rows] == ["update"]
    event = AuditEvent.objects.get(action="user.updated")
    assert event.details["changes"] == {
        "department": {"from": "", "to": "Platform"},
        "title": {"from": "", "to": "SRE"},
    }
    personas.requester.refresh_from_db()
    assert personas.requester.username == "rob.requester"
    assert personas.requester.has_usable_password()


def test_a_user_listed_twice_is_an_error(personas):
    text = HEADER + "a@example.com,A,,,,,,\nA@example.com,B,,,,,,\n"
    result = run_import(text, personas.admin)
    assert row_errors(result) == [
        "row 2 email: a@example.com is already on row 1 of this file; each user appears once."
    ]
    assert not User.objects.filter(email="a@example.com").exists()


def test_the_preview_shows_each_rows_manager_and_roles(personas):
    text = (
        HEADER
        + "dev@example.com,Dan,Dev,,,,boss@example.com,\n"
        + 'boss@example.com,Bea,Boss,,,,,"Auditor, Admin"\n'
        + f"{personas.requester.email},,,,,,boss@example.com,\n"
    )
    result = run_import(text, personas.admin, dry_run=True)
    assert not result.has_validation_errors(), row_errors(result)
    manager_at, roles_at = COLUMNS.index("manager_email"), COLUMNS.index("roles")
    dev, boss, requester = result.rows
    assert "boss@example.com" in dev.diff[manager_at]
    assert "Admin, Auditor" in boss.diff[roles_at]
    # An existing user's preview shows the old manager struck out and the new one.
    change = requester.diff[manager_at]
    assert f"<del{DIFF_STYLE_DEL}>mia.manager</del><ins{DIFF_STYLE_INS}>boss</ins>" in change


def test_a_dry_run_writes_nothing(personas):
    result = run_import(HEADER + "dry@example.com,D,R,,,,,Auditor\n", personas.admin, dry_run=True)
    assert not result.has_validation_errors()
    assert [row.import_type for row in result.rows] == ["new"]
    assert not User.objects.filter(email="dry@example.com").exists()
    assert not AuditEvent.objects.filter(action__in=["user.created", "role.granted"]).exists()


# Through the admin --------------------------------------------------------------------
def upload(client: Any, text: str) -> Any:
    return client.post(
        reverse("admin:access_user_import"),
        {
            "format": "0",
            "resource": "0",
            "import_file": SimpleUploadedFile("users.csv", text.encode(), "text/csv"),
        },
    )


def test_the_admin_imports_after_a_preview_and_a_confirmation(client, personas):
    client.force_login(personas.admin)
    text = (
        HEADER
        + "dev@example.com,Dan,Dev,,,,boss@example.com,\nboss@example.com,Bea,Boss,,,,,Auditor\n"
    )
    preview = upload(client, text)
    assert preview.status_code == 200
    confirm = preview.context["confirm_form"]
    assert confirm is not None
    assert not User.objects.filter(email="dev@example.com").exists()
    data = {name: confirm[name].value() for name in confirm.fields}
    response = client.post(reverse("admin:access_user_process_import"), data)
    assert response.status_code == 302
    dev = User.objects.get(email="dev@example.com")
    assert dev.manager.email == "boss@example.com"
    boss_created = AuditEvent.objects.get(action="user.created", target_id=str(dev.manager_id))
    assert boss_created.actor == personas.admin
    assert AuditEvent.objects.get(action="role.granted").target_id == str(dev.manager_id)


def test_the_admin_shows_an_unknown_manager_and_offers_no_confirmation(client, personas):
    client.force_login(personas.admin)
    response = upload(client, HEADER + "dev@example.com,Dan,Dev,,,,ghost@example.com,\n")
    assert response.status_code == 200
    assert "confirm_form" not in response.context
    assert (
        "ghost@example.com is neither in this file nor an existing user"
        in response.content.decode()
    )
    assert not User.objects.filter(email="dev@example.com").exists()


def test_the_import_page_is_refused_to_non_admins(client, personas):
    client.force_login(personas.auditor)
    response = upload(client, HEADER + "dev@example.com,Dan,Dev,,,,,Admin\n")
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 403
    assert not User.objects.filter(email="dev@example.com").exists()


# Export ------------------------------------------------------------------------------------
def test_the_export_has_managers_and_roles_and_neutralises_formulas(client, personas):
    personas.requester.title = '=HYPERLINK("http://evil")'
    personas.requester.save()
    client.force_login(personas.admin)
    response = client.post(
        reverse("admin:access_user_export"),
        {
            "format": "0",
            "resource": "0",
            **{
                f"userresource_{c}": "on"
                for c in (
                    "email",
                    "first_name",
                    "last_name",
                    "username",
                    "title",
                    "department",
                    "manager_email",
                    "roles",
                )
            },
        },
    )
    assert response.status_code == 200, response.content[:500]
    rows = {
        r["email"]: r for r in csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))
    }
    assert rows["rob.requester@example.com"]["manager_email"] == "mia.manager@example.com"
    assert rows["rob.requester@example.com"]["title"] == '\'=HYPERLINK("http://evil")'
    assert rows["ada.admin@example.com"]["roles"] == "Admin"
    assert rows["aud.auditor@example.com"]["roles"] == "Auditor"


def test_an_exported_file_imports_back_unchanged(client, personas):
    personas.requester.title = "-lead-"
    personas.requester.save()
    dataset = UserResource().export()
    result = UserResource().import_data(
        tablib.Dataset().load(dataset.csv, format="csv"), user=personas.admin
    )
    assert not result.has_errors() and not result.has_validation_errors(), row_errors(result)
    assert {row.import_type for row in result.rows} == {"skip"}
    personas.requester.refresh_from_db()
    assert personas.requester.title == "-lead-"
