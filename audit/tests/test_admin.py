"""The audit log in the admin: listed and viewable by admins, never added, changed or deleted."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from audit import admin as audit_admin
from audit.models import AuditEvent
from audit.services import record_event

CHANGELIST = reverse("admin:audit_auditevent_changelist")


def change_url(event: AuditEvent) -> str:
    return reverse("admin:audit_auditevent_change", args=[event.pk])


def test_admins_list_audit_events_in_the_admin(client, personas):
    event = record_event("test.admin", actor=personas.admin, target=personas.resource)
    client.force_login(personas.admin)

    response = client.get(CHANGELIST)

    body = response.content.decode()
    assert response.status_code == 200
    assert "test.admin" in body and str(personas.resource) in body
    assert change_url(event) in body
    assert reverse("admin:audit_auditevent_add") not in body
    assert "delete_selected" not in body


def _result_rows(response) -> str:
    return response.content.decode().split('id="result_list"')[1].split("</table>")[0]


@pytest.mark.parametrize(
    "query",
    [
        {"q": "test.admin"},
        {"action": "test.admin"},
        {"actor_type__exact": "system"},
    ],
)
def test_the_admin_list_filters_and_searches(client, personas, query):
    event = record_event("test.admin")
    record_event("test.other", actor=personas.admin)
    client.force_login(personas.admin)

    response = client.get(CHANGELIST, query)

    assert response.status_code == 200
    assert change_url(event) in _result_rows(response)
    assert "test.other" not in _result_rows(response)


def test_the_admin_list_filters_by_date(client, personas, record_at):
    old = record_at(dt.datetime(2020, 1, 1, 12), "test.old")
    new = record_event("test.new")
    client.force_login(personas.admin)
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)

    response = client.get(CHANGELIST, {"occurred_at__gte": str(today)})

    assert response.status_code == 200
    assert change_url(new) in _result_rows(response)
    assert change_url(old) not in _result_rows(response)


def test_an_event_is_shown_read_only_with_its_hashes(client, personas):
    event = record_event("test.admin", details={"after": {"name": "prod"}})
    client.force_login(personas.admin)

    response = client.get(change_url(event))

    body = response.content.decode()
    assert response.status_code == 200
    assert event.hash in body and event.prev_hash in body
    assert "&quot;name&quot;: &quot;prod&quot;" in body
    assert 'name="_save"' not in body
    assert 'name="action"' not in body and 'name="details"' not in body


def test_the_admin_refuses_to_add_change_or_delete_events(client, personas):
    event = record_event("test.admin")
    client.force_login(personas.admin)

    add = client.get(reverse("admin:audit_auditevent_add"))
    change = client.post(change_url(event), {"action": "test.forged"})
    delete = client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"})
    bulk_delete = client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert bulk_delete.status_code in (200, 302)
    assert AuditEvent.objects.filter(pk=event.pk, action="test.admin").exists()


@pytest.mark.parametrize("persona", ["auditor", "requester", "outsider"])
def test_the_admin_is_closed_to_everyone_but_admins(client, personas, persona):
    """Auditors read the log on the audit page; the admin site is the Admin role's."""
    record_event("test.admin")
    client.force_login(getattr(personas, persona))

    response = client.get(CHANGELIST)
    followed = client.get(CHANGELIST, follow=True)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert b"test.admin" not in followed.content


def test_the_admin_list_counts_at_most_a_bounded_number_of_rows(client, personas, monkeypatch):
    monkeypatch.setattr(audit_admin, "COUNT_LIMIT", 3)
    for n in range(5):
        record_event("test.many", details={"n": n})
    client.force_login(personas.admin)

    response = client.get(CHANGELIST, {"action": "test.many"})

    assert response.status_code == 200
    assert response.context["cl"].result_count == 3


def test_the_admin_list_costs_the_same_queries_for_5_and_50_events(client, personas):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(personas.admin)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(CHANGELIST).status_code == 200
        return len(captured.captured_queries)

    for n in range(5):
        record_event("test.cost", actor=personas.admin, target=personas.resource, details={"n": n})
    few = queries()
    for n in range(45):
        record_event("test.cost", actor=personas.admin, target=personas.resource, details={"n": n})

    assert queries() == few
