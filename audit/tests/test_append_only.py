"""Audit events are never changed or removed: the database triggers and the model both refuse."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audit import triggers
from audit.models import AppendOnlyError, AuditEvent
from audit.services import record_event, verify_chain


def _raw(sql: str, params: list) -> None:
    # A savepoint, so the refused statement does not poison the test's transaction on PostgreSQL.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
def test_the_database_refuses_a_raw_update_of_an_audit_row():
    event = record_event("test.one", details={"n": 1})

    with pytest.raises(DatabaseError, match=triggers.MESSAGE):
        _raw("UPDATE audit_auditevent SET action = %s WHERE id = %s", ["test.forged", event.pk])

    assert AuditEvent.objects.get(pk=event.pk).action == "test.one"


@pytest.mark.django_db
def test_the_database_refuses_a_raw_delete_of_an_audit_row():
    event = record_event("test.one")

    with pytest.raises(DatabaseError, match=triggers.MESSAGE):
        _raw("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])

    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_the_database_refuses_a_raw_delete_of_the_whole_table():
    record_event("test.one")
    record_event("test.two")

    with pytest.raises(DatabaseError, match=triggers.MESSAGE):
        _raw("DELETE FROM audit_auditevent WHERE 1 = %s", [1])

    assert AuditEvent.objects.count() == 2


@pytest.mark.django_db
def test_the_triggers_are_what_refuses_a_raw_update():
    """Without the triggers the same statement goes through: the refusal above is theirs."""
    event = record_event("test.one")
    triggers.drop(connection)
    try:
        _raw("UPDATE audit_auditevent SET action = %s WHERE id = %s", ["test.forged", event.pk])
    finally:
        triggers.install(connection)

    assert AuditEvent.objects.get(pk=event.pk).action == "test.forged"


@pytest.mark.django_db
def test_an_event_cannot_be_saved_again():
    event = record_event("test.one")
    event.action = "test.forged"

    with pytest.raises(AppendOnlyError, match="never updated"):
        event.save()
    with pytest.raises(AppendOnlyError, match="never updated"):
        AuditEvent.objects.get(pk=event.pk).save(update_fields=["action"])

    assert AuditEvent.objects.get(pk=event.pk).action == "test.one"


@pytest.mark.django_db
def test_an_event_cannot_be_deleted():
    event = record_event("test.one")

    with pytest.raises(AppendOnlyError, match="never deleted"):
        event.delete()

    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_querysets_refuse_update_delete_and_bulk_writes():
    event = record_event("test.one")

    with pytest.raises(AppendOnlyError, match="never updated"):
        AuditEvent.objects.filter(pk=event.pk).update(action="test.forged")
    with pytest.raises(AppendOnlyError, match="never deleted"):
        AuditEvent.objects.all().delete()
    event.action = "test.forged"
    # bulk_update runs inside its own atomic block, which the refusal marks for rollback.
    with pytest.raises(AppendOnlyError, match="never updated"), transaction.atomic():
        AuditEvent.objects.bulk_update([event], ["action"])
    with pytest.raises(AppendOnlyError, match="record_event"):
        AuditEvent.objects.bulk_create([AuditEvent(action="test.bulk")])

    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["test.one"]
    assert list(verify_chain()) == [event.pk]


@pytest.mark.django_db
def test_an_event_with_a_chosen_id_is_refused():
    """Creating with an explicit primary key could overwrite a row; only record_event appends."""
    event = record_event("test.one")

    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.create(pk=event.pk, action="test.forged", prev_hash="", hash="x")


@pytest.mark.django_db
def test_the_database_refuses_to_truncate_the_audit_log():
    """TRUNCATE fires no row trigger; a statement trigger refuses it."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    event = record_event("test.one")

    with pytest.raises(DatabaseError, match=triggers.MESSAGE):
        _raw("TRUNCATE audit_auditevent", [])
    with pytest.raises(DatabaseError, match=triggers.MESSAGE):
        _raw("TRUNCATE audit_auditevent, access_user CASCADE", [])

    assert list(verify_chain()) == [event.pk]


@pytest.mark.django_db(transaction=True)
def test_the_truncate_trigger_is_back_after_a_transactional_tests_flush():
    """Transactional tests' flushes lift the trigger only inside the flush itself."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    record_event("test.one")
    call_command("flush", interactive=False, verbosity=0)

    assert not AuditEvent.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_event_no_truncate' "
            "AND tgrelid = %s::regclass",
            [triggers.TABLE],
        )
        assert cursor.fetchone() == (1,)
