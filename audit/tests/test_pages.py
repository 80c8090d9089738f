"""The audit page and the event page: who may see them, filters, pagination, query cost."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit import views
from audit.models import AuditEvent
from audit.services import record_event
from audit.tests.helpers import page_event_ids
from tests.fixtures import make_user

LIST_URL = reverse("audit:event-list")


def detail_url(event: AuditEvent) -> str:
    return reverse("audit:event-detail", args=[event.pk])


# Who may see the pages ----------------------------------------------------------
@pytest.mark.parametrize("persona", ["auditor", "admin"])
def test_auditors_and_admins_see_the_audit_page(client, personas, persona):
    event = record_event("test.visible", actor=personas.admin, target=personas.resource)
    client.force_login(getattr(personas, persona))

    response = client.get(LIST_URL)

    assert response.status_code == 200
    assert event.pk in page_event_ids(response)
    assert "test.visible" in response.content.decode()


@pytest.mark.parametrize("persona", ["requester", "approver", "manager", "outsider"])
def test_other_users_are_refused_the_audit_page(client, personas, persona):
    record_event("test.hidden")
    client.force_login(getattr(personas, persona))

    response = client.get(LIST_URL)

    assert response.status_code == 403
    assert b"test.hidden" not in response.content


def test_anonymous_visitors_are_sent_to_login_from_the_audit_page(client, db):
    response = client.get(LIST_URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    assert "next=/audit/" in response["Location"]


@pytest.mark.parametrize("persona", ["auditor", "admin"])
def test_auditors_and_admins_see_an_event_with_its_hashes(client, personas, persona):
    before = record_event("test.before")
    event = record_event(
        "test.detail", actor=personas.admin, target=personas.resource, details={"after": {"x": 1}}
    )
    client.force_login(getattr(personas, persona))

    response = client.get(detail_url(event))

    body = response.content.decode()
    assert response.status_code == 200
    assert event.hash in body and event.prev_hash in body
    assert event.prev_hash == before.hash
    assert f"matches event {before.pk}" in body
    assert "matches the contents" in body
    assert "&quot;after&quot;: {" in body
    assert '<span data-testid="actor-name">Ada</span>' in body
    assert f'data-testid="actor-email">{personas.admin.email}</a>' in body


def test_an_actor_who_no_longer_exists_keeps_the_recorded_name(client, personas):
    gone = make_user("gone@example.com", first_name="Gone")
    event = record_event("test.gone", actor=gone)
    gone_name = event.actor_name
    type(gone).objects.filter(pk=gone.pk).delete()
    client.force_login(personas.auditor)

    for url in (LIST_URL, detail_url(event)):
        body = client.get(url).content.decode()
        assert f'{gone_name}</span> <span class="muted">(user no longer exists)</span>' in body, url


def test_renaming_an_actor_later_does_not_rewrite_who_acted(client, personas):
    """An admin who acts, then renames themself to look like someone else: the event still
    names them as recorded, first; the current name is marked as now."""
    event = record_event("test.renamed", actor=personas.admin)
    recorded = event.actor_name
    type(personas.admin).objects.filter(pk=personas.admin.pk).update(
        first_name="Olga", last_name="Owner", email="olga.owner2@example.com"
    )
    client.force_login(personas.auditor)

    for url in (LIST_URL, detail_url(event)):
        body = client.get(url).content.decode()
        assert f'<span data-testid="actor-recorded">{recorded}</span><br>' in body, url
        assert (
            '<span class="muted small">currently</span> <span data-testid="actor-name">Olga Owner'
            in body
        )


@pytest.mark.parametrize("persona", ["requester", "outsider"])
def test_other_users_are_refused_an_event(client, personas, persona):
    event = record_event("test.hidden")
    client.force_login(getattr(personas, persona))

    assert client.get(detail_url(event)).status_code == 403


def test_anonymous_visitors_are_sent_to_login_from_an_event(client, db):
    event = record_event("test.hidden")

    response = client.get(detail_url(event))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_an_unknown_event_is_404(client, personas):
    client.force_login(personas.auditor)

    assert client.get(reverse("audit:event-detail", args=[10**12])).status_code == 404
    # Beyond a 64-bit integer: still a 404, not a database error.
    assert client.get(reverse("audit:event-detail", args=[10**24])).status_code == 404


def test_the_pages_answer_get_only(client, personas):
    event = record_event("test.one")
    client.force_login(personas.auditor)

    assert client.post(LIST_URL).status_code == 405
    assert client.post(detail_url(event)).status_code == 405


def test_the_event_page_says_when_the_next_event_does_not_point_back(client, personas):
    from audit.tests.test_audit_verify import _behind_the_triggers_back

    first, second, third = (record_event(f"test.{n}") for n in range(3))
    _behind_the_triggers_back("DELETE FROM audit_auditevent WHERE id = %s", [second.pk])
    client.force_login(personas.auditor)

    body_first = client.get(detail_url(first)).content.decode()
    body_third = client.get(detail_url(third)).content.decode()

    assert f"The next event ({third.pk}) does not point back to this one" in body_first
    assert f"does not match event {first.pk}" in body_third


# What the page shows ----------------------------------------------------------------
def test_the_page_shows_time_actor_action_target_details_request_and_ip(client, personas):
    from audit import context

    token = context.activate(
        context.RequestContext(request_id="req-abc12345", ip_address="203.0.113.9")
    )
    try:
        record_event(
            "access.owner.added",
            actor=personas.admin,
            target=personas.resource,
            details={"after": {"owner": "olga"}, "password": "hunter2hunter2"},
        )
    finally:
        context.deactivate(token)
    client.force_login(personas.auditor)

    body = client.get(LIST_URL).content.decode()

    assert '<span data-testid="actor-name">Ada</span>' in body
    assert f'data-testid="actor-email">{personas.admin.email}</a>' in body
    assert "access.owner.added" in body
    assert f"access.resource #{personas.resource.pk}" in body and str(personas.resource) in body
    assert "<details><summary>2 fields</summary>" in body
    assert "&quot;owner&quot;: &quot;olga&quot;" in body
    assert "hunter2" not in body and "[redacted]" in body
    assert "req-abc12345" in body and "203.0.113.9" in body


# Filters ----------------------------------------------------------------------------
@pytest.fixture
def varied(personas, record_at):
    day = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC)
    return {
        "login": record_at(day, "user.login", actor=personas.requester),
        "owner": record_at(
            day + dt.timedelta(days=1),
            "access.owner.added",
            actor=personas.admin,
            target=personas.resource,
        ),
        "late": record_at(
            dt.datetime(2025, 3, 12, 23, 59, 59, tzinfo=dt.UTC),
            "access.rule.changed",
            actor=personas.admin,
            target_type="access.requestrule",
            target_id=7,
            target_label="Rule for staging",
        ),
        "system": record_at(dt.datetime(2025, 3, 13, 0, 0, tzinfo=dt.UTC), "grant.expired"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"actor": "ADA"}, ["late", "owner"]),
        ({"actor": "rob.req"}, ["login"]),
        ({"actor_type": "system"}, ["system"]),
        ({"action": "access.owner.added"}, ["owner"]),
        ({"action": "access.owner"}, []),  # exact, not a prefix
        ({"target_type": "access.requestrule"}, ["late"]),
        ({"target_type": "access.requestrule", "target_id": "7"}, ["late"]),
        ({"target_id": "8"}, []),
        ({"target": "staging"}, ["late"]),
        ({"date_from": "2025-03-11"}, ["system", "late", "owner"]),
        ({"date_to": "2025-03-12"}, ["late", "owner", "login"]),
        ({"date_from": "2025-03-11", "date_to": "2025-03-12"}, ["late", "owner"]),
        ({"date_from": "2025-03-13", "date_to": "2025-03-13"}, ["system"]),
        ({"actor": "ada", "date_to": "2025-03-11"}, ["owner"]),
        (
            {"date_to": "9999-12-31", "date_from": "0001-01-01"},
            ["system", "late", "owner", "login"],
        ),
    ],
)
def test_filters_narrow_the_page(client, personas, varied, query, expected):
    client.force_login(personas.auditor)

    response = client.get(LIST_URL, query)

    assert response.status_code == 200
    # Setting up the personas records events of its own; these tests look at theirs.
    ours = {event.pk for event in varied.values()}
    shown = [pk for pk in page_event_ids(response) if pk in ours]
    assert shown == [varied[name].pk for name in expected]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            {"date_from": "2025-13-45"},
            "&#x27;From&#x27; is not a date. Enter the date as YYYY-MM-DD",
        ),
        ({"date_to": "yesterday"}, "&#x27;To&#x27; is not a date."),
        (
            {"date_from": "2025-03-12", "date_to": "2025-03-11"},
            "The &#x27;from&#x27; date (2025-03-12) is after the &#x27;to&#x27; date (2025-03-11)",
        ),
        ({"actor_type": "robot"}, "Actor type: Select a valid choice."),
        ({"before": "abc"}, "&#x27;before&#x27; must be an event number"),
        ({"after": "-1"}, "&#x27;after&#x27; must be an event number"),
        ({"before": "²"}, "&#x27;before&#x27; must be an event number"),
    ],
)
def test_bad_filter_input_gets_a_message_not_an_error(client, personas, varied, query, message):
    client.force_login(personas.auditor)

    response = client.get(LIST_URL, query)

    body = response.content.decode()
    assert response.status_code == 400
    assert message in body
    assert page_event_ids(response) == []
    # What was typed stays in the form, to be corrected.
    for key, value in query.items():
        if key not in ("before", "after", "actor_type"):
            assert f'value="{value}"' in body


def test_the_action_box_suggests_the_actions_present(client, personas, varied):
    client.force_login(personas.auditor)

    body = client.get(LIST_URL).content.decode()

    for action in ("user.login", "access.owner.added", "access.rule.changed", "grant.expired"):
        assert f'<option value="{action}">' in body
    assert '<option value="access.requestrule">' in body


# Pagination -------------------------------------------------------------------------
def test_the_page_walks_the_log_by_id_keeping_the_filters(client, personas, monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    wanted = [record_event("test.wanted", details={"n": n}).pk for n in range(7)]
    record_event("test.other")
    client.force_login(personas.auditor)

    first = client.get(LIST_URL, {"action": "test.wanted"})
    assert page_event_ids(first) == wanted[:-4:-1]
    assert first.context["newer_after"] is None
    older = first.context["older_before"]
    assert f"?action=test.wanted&amp;before={wanted[4]}" in first.content.decode()

    second = client.get(LIST_URL, {"action": "test.wanted", "before": older})
    assert page_event_ids(second) == [wanted[3], wanted[2], wanted[1]]

    third = client.get(
        LIST_URL, {"action": "test.wanted", "before": second.context["older_before"]}
    )
    assert page_event_ids(third) == [wanted[0]]
    assert third.context["older_before"] is None

    back = client.get(LIST_URL, {"action": "test.wanted", "after": third.context["newer_after"]})
    assert page_event_ids(back) == [wanted[3], wanted[2], wanted[1]]
    assert back.context["older_before"] == wanted[1]

    newest = client.get(LIST_URL, {"action": "test.wanted", "after": back.context["newer_after"]})
    assert page_event_ids(newest) == wanted[:-4:-1]
    assert newest.context["newer_after"] is None


def test_a_page_past_the_end_says_so(client, personas):
    event = record_event("test.one")
    client.force_login(personas.auditor)

    response = client.get(LIST_URL, {"before": event.pk})

    assert response.status_code == 200
    assert "No more events here." in response.content.decode()


# Query cost ---------------------------------------------------------------------------
def _queries_for_page(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_the_page_costs_the_same_queries_for_5_and_50_events(
    client, personas, django_assert_max_num_queries
):
    for n in range(5):
        record_event("test.cost", actor=personas.admin, target=personas.resource, details={"n": n})
    client.force_login(personas.auditor)
    with django_assert_max_num_queries(6):
        few = _queries_for_page(client, LIST_URL)

    for n in range(45):
        record_event("test.cost", actor=personas.admin, target=personas.resource, details={"n": n})
    many = _queries_for_page(client, LIST_URL)

    assert few == many
    assert len(page_event_ids(client.get(LIST_URL))) == 50


def test_the_page_never_counts_the_whole_table(client, personas):
    record_event("test.one")
    client.force_login(personas.auditor)

    with CaptureQueriesContext(connection) as captured:
        client.get(LIST_URL, {"actor": "sys"})

    audit_queries = [q["sql"] for q in captured.captured_queries if "audit_auditevent" in q["sql"]]
    assert audit_queries
    assert not any("COUNT(" in sql.upper() for sql in audit_queries)
    assert all("LIMIT" in sql.upper() for sql in audit_queries)


def test_the_refusal_is_the_portals_page_saying_who_is_signed_in(client, personas):
    client.force_login(personas.outsider)

    response = client.get(LIST_URL)

    assert response.status_code == 403
    page = response.content.decode()
    assert "You don't have access to this page" in page
    assert f'data-testid="signed-in-as">{personas.outsider.email}<' in page
    # The portal's layout, with a way home and a way to switch account (logout is a POST).
    assert 'class="brand"' in page and "portcullis/portal.css" in page
    assert f'href="{reverse("home")}"' in page
    assert f'action="{reverse("account_logout")}"' in page
    assert "csrfmiddlewaretoken" in page
