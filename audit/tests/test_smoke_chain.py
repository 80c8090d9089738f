import pytest
from django.db import connection, transaction

from audit.models import AuditEvent
from audit.services import record_event, verify_chain


@pytest.mark.django_db
def test_it_chains_events_and_refuses_raw_update():
    a = record_event("test.one", details={"password": "x", "n": 1})
    b = record_event("test.two")
    assert b.prev_hash == a.hash
    assert AuditEvent.objects.get(pk=a.pk).details["password"] == "[redacted]"
    assert list(verify_chain()) == [a.id, b.id]
    with (
        pytest.raises(Exception, match="append-only"),
        transaction.atomic(),
        connection.cursor() as c,
    ):
        c.execute("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [a.id])
