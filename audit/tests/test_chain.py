"""Recording events: the chain, redaction of secrets, values that must survive the database."""

from __future__ import annotations

import contextlib

import pytest
from django.db import transaction

from audit import context
from audit.choices import ActorType
from audit.models import GENESIS_HASH, AuditEvent
from audit.services import (
    REDACTED,
    ChainProblem,
    PendingEvent,
    record_event,
    record_events,
    verify_chain,
)


@pytest.mark.django_db
def test_a_transactions_next_event_links_to_its_last_without_reading_the_head(
    django_assert_num_queries,
):
    with transaction.atomic():
        first = record_event("test.one")
        with django_assert_num_queries(1):  # the INSERT: the lock is held, the head known
            second = record_event("test.two")
    assert second.prev_hash == first.hash
    assert all(isinstance(item, int) for item in verify_chain())


@pytest.mark.django_db
def test_an_event_rolled_back_with_its_savepoint_is_not_linked_to():
    with transaction.atomic():
        first = record_event("test.kept")
        with contextlib.suppress(RuntimeError), transaction.atomic():
            record_event("test.rolled_back")
            raise RuntimeError("the change it described failed")
        last = record_event("test.kept_too")
    assert last.prev_hash == first.hash
    assert not AuditEvent.objects.filter(action="test.rolled_back").exists()
    assert all(isinstance(item, int) for item in verify_chain())


@pytest.mark.django_db
def test_each_event_points_at_the_hash_of_the_one_before(personas):
    first = record_event("test.one", actor=personas.admin, target=personas.resource)
    second = record_event("test.two")

    assert first.prev_hash == GENESIS_HASH or AuditEvent.objects.filter(pk__lt=first.pk).exists()
    assert second.prev_hash == first.hash
    assert first.actor_type == ActorType.USER
    assert first.actor_name == personas.admin.get_username()
    assert (first.target_type, first.target_id) == ("access.resource", str(personas.resource.pk))
    assert second.actor_type == ActorType.SYSTEM and second.actor_name == "system"
    assert all(isinstance(item, int) for item in verify_chain())


@pytest.mark.django_db
def test_secrets_are_redacted_in_details_at_any_depth_and_in_any_spelling():
    event = record_event(
        "test.secrets",
        details={
            "password": "hunter2hunter2",
            "password1": "hunter2hunter2",
            "after": {
                "client_secret": "s3cr3t",
                "Credentials": {"AccessKeyId": "AKIA", "SecretAccessKey": "wJalr"},
                "SessionToken": "FwoG",
                "X-Api-Key": "k-123",
                "clientSecret": "cs",
            },
            "items": [{"api_key": "ak"}, {"name": "kept"}],
            "headers": {"Authorization": "Bearer pcl_x", "Cookie": "sessionid=abc"},
            "username": "rob",
            "tokenizer": "kept",
            "empty_password": "",
        },
    )

    stored = AuditEvent.objects.get(pk=event.pk).details
    assert stored["password"] == REDACTED
    assert stored["password1"] == REDACTED
    assert stored["after"] == {
        "client_secret": REDACTED,
        "Credentials": REDACTED,
        "SessionToken": REDACTED,
        "X-Api-Key": REDACTED,
        "clientSecret": REDACTED,
    }
    assert stored["items"] == [{"api_key": REDACTED}, {"name": "kept"}]
    assert stored["headers"] == {"Authorization": REDACTED, "Cookie": REDACTED}
    assert (stored["username"], stored["tokenizer"]) == ("rob", "kept")
    # An empty value is no secret, and showing it tells the auditor it was cleared.
    assert stored["empty_password"] == ""
    for secret in ("hunter2", "s3cr3t", "AKIA", "wJalr", "FwoG", "k-123"):
        assert secret not in str(stored)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "client_ip",
    [
        "203.0.113.7",
        "2001:db8::1",
        # What the middleware makes of a dual-stack socket's IPv4 client: the column
        # stores it as ::ffff:10.0.0.1, and the hash must be computed on that form.
        "::ffff:a00:1",
    ],
)
def test_the_client_ip_is_hashed_in_the_form_the_database_keeps(client_ip):
    token = context.activate(
        context.RequestContext(request_id="req-12345678", ip_address=client_ip)
    )
    try:
        event = record_event("test.ip")
    finally:
        context.deactivate(token)

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.ip_address == event.ip_address
    assert stored.request_id == "req-12345678"
    assert stored.compute_hash() == stored.hash
    assert not any(isinstance(item, ChainProblem) for item in verify_chain())


@pytest.mark.django_db
def test_numbers_in_details_keep_their_hash_through_the_database():
    """PostgreSQL's jsonb prints 1e+20 back as 100000000000000000000."""
    event = record_event(
        "test.numbers",
        details={"big": 1e20, "huge": 1.7976931348623157e308, "small": 1e-7, "x": 0.1, "n": 2**70},
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.details == event.details
    assert stored.compute_hash() == stored.hash
    assert not any(isinstance(item, ChainProblem) for item in verify_chain())


@pytest.mark.django_db
def test_details_that_are_not_json_are_stored_as_text():
    import datetime as dt
    import uuid

    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    event = record_event(
        "test.types", details={"when": dt.date(2025, 1, 31), "id": ident, "tags": ("a", "b")}
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.details == {"when": "2025-01-31", "id": str(ident), "tags": ["a", "b"]}
    assert stored.compute_hash() == stored.hash


@pytest.mark.django_db
def test_events_recorded_in_bulk_extend_the_chain_in_order(settings):
    first = record_event("test.single")
    settings.AUDIT_CHAIN_KEY = ["k" * 40]
    rows = record_events(
        [
            PendingEvent("test.bulk", "test.thing", n, f"thing {n}", {"n": n, "password": "x"})
            for n in range(1203)  # more than one insert's worth
        ]
    )
    last = record_event("test.single")

    stored = list(AuditEvent.objects.order_by("id"))
    assert [e.pk for e in stored] == [first.pk, *(r.pk for r in rows), last.pk]
    assert [e.target_id for e in stored[1:-1]] == [str(n) for n in range(1203)]
    assert stored[1].prev_hash == first.hash
    assert last.prev_hash == rows[-1].hash
    assert stored[5].details == {"n": 4, "password": "[redacted]"}
    assert all(e.key_id for e in stored[1:])
    assert list(verify_chain())[-1] == last.pk
    assert all(e.compute_hash() == e.hash for e in stored)


@pytest.mark.django_db
def test_bulk_events_roll_back_with_their_transaction():
    record_event("test.kept")
    with pytest.raises(RuntimeError), transaction.atomic():
        record_events([PendingEvent("test.lost") for _ in range(3)])
        raise RuntimeError("the change failed")

    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["test.kept"]
    assert record_events([]) == []
