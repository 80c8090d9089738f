"""``manage.py audit_verify`` finds an intact chain intact, and names the first broken event."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from audit import triggers
from audit.models import AuditEvent
from audit.services import _ChainHead, record_event


def _verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out, stderr=StringIO())
    return out.getvalue()


def _behind_the_triggers_back(sql: str, params: list) -> None:
    """What someone with database access could do: lift the triggers, change rows, restore them."""
    with transaction.atomic():
        triggers.drop(connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        triggers.install(connection)
    # Someone else's session, in earnest, after the events were committed: this test's
    # transaction forgets the head it wrote, as its commit would have.
    connection.run_on_commit[:] = [
        entry for entry in connection.run_on_commit if not isinstance(entry[1], _ChainHead)
    ]


@pytest.fixture
def chain(db) -> list[AuditEvent]:
    return [
        record_event("test.created", target_type="test.thing", target_id=n, details={"n": n})
        for n in range(5)
    ]


def test_it_reports_an_intact_chain_and_its_length(chain):
    output = _verify()

    assert f"audit chain intact: {AuditEvent.objects.count()} events" in output
    assert f"latest hash: {chain[-1].hash} (event {chain[-1].pk})" in output


@pytest.mark.django_db
def test_it_reports_an_empty_log_as_intact():
    assert _verify().startswith("audit chain intact: 0 events")


def test_it_exits_1_naming_an_event_changed_behind_the_triggers_back(chain):
    changed = chain[2]
    _behind_the_triggers_back(
        "UPDATE audit_auditevent SET details = %s WHERE id = %s", ['{"n": 99}', changed.pk]
    )

    with pytest.raises(CommandError) as refused:
        _verify()

    message = str(refused.value)
    assert refused.value.returncode == 1
    assert message.startswith(f"audit chain broken at event {changed.pk} ")
    assert "action test.created" in message
    assert changed.occurred_at.isoformat() in message
    assert "its contents do not match its hash (the row was changed)" in message
    assert f"the last of them being event {chain[1].pk}" in message


def test_it_names_the_event_after_a_deleted_one(chain):
    _behind_the_triggers_back("DELETE FROM audit_auditevent WHERE id = %s", [chain[2].pk])

    with pytest.raises(CommandError) as refused:
        _verify()

    message = str(refused.value)
    assert message.startswith(f"audit chain broken at event {chain[3].pk} ")
    assert "an event was removed or inserted" in message
    assert f"the last of them being event {chain[1].pk}" in message


def test_it_finds_a_changed_event_even_when_its_own_hash_was_recomputed(chain):
    """A careful forger rehashes the row; the next event still points at the old hash."""
    forged = AuditEvent.objects.get(pk=chain[1].pk)
    forged.actor_name = "someone else"
    new_hash = forged.compute_hash()
    _behind_the_triggers_back(
        "UPDATE audit_auditevent SET actor_name = %s, hash = %s WHERE id = %s",
        ["someone else", new_hash, forged.pk],
    )

    with pytest.raises(CommandError) as refused:
        _verify()

    assert str(refused.value).startswith(f"audit chain broken at event {chain[2].pk} ")


def test_it_names_a_broken_first_event(db):
    first = record_event("test.first")
    _behind_the_triggers_back(
        "UPDATE audit_auditevent SET action = %s WHERE id = %s", ["test.forged", first.pk]
    )

    with pytest.raises(CommandError, match="it is the first event in the log"):
        _verify()


def test_the_triggers_are_back_after_the_tampering_helper(chain):
    """The helper above must not leave the table writable for the tests that follow."""
    _behind_the_triggers_back("SELECT %s", [1])

    with (
        pytest.raises(Exception, match=triggers.MESSAGE),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [chain[0].pk])


def test_it_refuses_a_chunk_size_below_one(chain):
    with pytest.raises(CommandError, match="--chunk-size must be at least 1"):
        call_command("audit_verify", chunk_size=0, stdout=StringIO())


def test_a_small_chunk_size_walks_the_same_chain(chain):
    out = StringIO()
    call_command("audit_verify", chunk_size=2, stdout=out)

    assert f"audit chain intact: {AuditEvent.objects.count()} events" in out.getvalue()


class _Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_it_shows_progress_on_a_terminal_and_not_otherwise(chain):
    terminal, piped = _Terminal(), StringIO()

    call_command("audit_verify", stdout=StringIO(), stderr=terminal)
    call_command("audit_verify", stdout=StringIO(), stderr=piped)

    assert "verifying" in terminal.getvalue()
    assert f"{AuditEvent.objects.count()}/{AuditEvent.objects.count()}" in terminal.getvalue()
    assert piped.getvalue() == ""


def _verify_with_head(head: str) -> str:
    out = StringIO()
    call_command("audit_verify", "--expect-head", head, stdout=out, stderr=StringIO())
    return out.getvalue()


def _head(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("head: "))[6:]


def _rehash_from(events: list[AuditEvent], start: int, **changes: object) -> None:
    """A forger with write access rewrites event ``start`` and recomputes every hash after it,
    so the chain is intact again; only a head kept elsewhere (or a key) tells. A ``key_id``
    change applies to every rewritten event (a forger without the key writes plain hashes)."""
    prev = events[start - 1].hash if start else events[0].prev_hash
    with transaction.atomic():
        triggers.drop(connection)
        for n, original in enumerate(events[start:]):
            event = AuditEvent.objects.get(pk=original.pk)
            for name, value in changes.items():
                if n == 0 or name == "key_id":
                    setattr(event, name, value)
            event.prev_hash = prev
            event.hash = event.compute_hash()
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE audit_auditevent SET actor_name = %s, key_id = %s, prev_hash = %s, "
                    "hash = %s WHERE id = %s",
                    [event.actor_name, event.key_id, event.prev_hash, event.hash, event.pk],
                )
            prev = event.hash
        triggers.install(connection)


def test_it_prints_the_head_to_keep_elsewhere(chain):
    assert _head(_verify()) == f"{chain[-1].hash}:{len(chain)}"


def test_an_expected_head_is_found_in_a_longer_chain(chain):
    head = _head(_verify())
    record_event("test.later")

    output = _verify_with_head(head)

    assert f"audit chain intact: {len(chain) + 1} events" in output
    assert f"expected head found: {chain[-1].hash}" in output
    assert f"expected head found: {chain[-1].hash}" in _verify_with_head(chain[-1].hash)


def test_it_fails_when_the_newest_events_were_removed(chain):
    head = _head(_verify())
    _behind_the_triggers_back("DELETE FROM audit_auditevent WHERE id >= %s", [chain[3].pk])
    assert "audit chain intact: 3 events" in _verify()  # the chain alone cannot tell

    with pytest.raises(CommandError) as refused:
        _verify_with_head(head)
    assert "audit chain is shorter than the expected head: 3 events, not at least 5" in str(
        refused.value
    )
    with pytest.raises(CommandError, match="does not hold the expected head"):
        _verify_with_head(chain[-1].hash)


def test_it_fails_when_the_chain_was_rehashed(chain):
    head = _head(_verify())
    _rehash_from(chain, 1, actor_name="someone else")
    assert "audit chain intact: 5 events" in _verify()  # the chain alone cannot tell

    with pytest.raises(CommandError) as refused:
        _verify_with_head(head)
    assert f"event number 5 (id {chain[-1].pk}) has hash" in str(refused.value)
    assert f"not {chain[-1].hash}; the chain was rewritten" in str(refused.value)


def test_it_fails_when_the_head_is_found_at_another_place(chain):
    with pytest.raises(CommandError, match="differs from the expected head: event number 4"):
        _verify_with_head(f"{chain[-1].hash}:4")


@pytest.mark.parametrize("head", ["abc", "0" * 64 + ":0", "0" * 64 + ":x", "g" * 64])
def test_it_refuses_a_malformed_expected_head(chain, head):
    with pytest.raises(CommandError, match="is not HASH or HASH:COUNT"):
        _verify_with_head(head)
