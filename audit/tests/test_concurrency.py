"""Writers in several threads, each with its own database connection, keep the chain linear."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import pairwise

import pytest
from django.db import close_old_connections, connection

from audit import services
from audit.models import AuditEvent
from audit.services import ChainProblem, record_event, verify_chain

THREADS = 6
EVENTS_PER_THREAD = 10


def _run_writers(before_hash: Callable[[], None] | None = None) -> list[BaseException]:
    """Starts THREADS writers together; each records EVENTS_PER_THREAD events, one per transaction."""
    start = threading.Barrier(THREADS, timeout=30)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            close_old_connections()
            start.wait()
            for i in range(EVENTS_PER_THREAD):
                record_event("test.concurrent", actor_name=f"writer-{n}", details={"i": i})
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            # Each thread opened its own connection; leaving it open would block the flush.
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer did not finish"
    return errors


def _widen_the_race_window(monkeypatch: pytest.MonkeyPatch, pause: Callable[[], None]) -> None:
    # compute_hash runs between reading the previous hash and inserting the row: a
    # writer pausing there invites others to read the same previous hash.
    original = AuditEvent.compute_hash

    def compute_hash(self: AuditEvent) -> str:
        pause()
        return original(self)

    monkeypatch.setattr(AuditEvent, "compute_hash", compute_hash)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_the_chain_linear(monkeypatch):
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]  # SQLite's
        pytest.skip(
            "SQLite's shared-cache in-memory test database uses table locks that do not wait; "
            "the file database serialises writers with BEGIN IMMEDIATE (settings)."
        )
    _widen_the_race_window(monkeypatch, lambda: time.sleep(0.002))

    errors = _run_writers()
    monkeypatch.undo()

    assert errors == []
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == THREADS * EVENTS_PER_THREAD
    for previous, event in pairwise(events):
        assert event.prev_hash == previous.hash, f"event {event.pk} does not follow {previous.pk}"
    assert [item for item in verify_chain() if isinstance(item, ChainProblem)] == []
    # The writers really overlapped: their events interleave in the chain.
    writers = [event.actor_name for event in events]
    switches = sum(1 for a, b in pairwise(writers) if a != b)
    assert switches > THREADS, f"writers ran one after another: {writers}"


@pytest.mark.django_db(transaction=True)
def test_without_the_chain_lock_concurrent_writers_would_fork_the_chain(monkeypatch):
    """Shows the test above can fail: with the lock removed, the same writers fork the chain."""
    if connection.vendor != "postgresql":
        pytest.skip("On SQLite the transaction's own write lock serialises writers.")
    monkeypatch.setattr(services, "_lock_chain", lambda: None)
    # Every writer reads the previous hash before any of them inserts.
    first_read = threading.Barrier(THREADS, timeout=30)
    seen: set[int] = set()

    def pause() -> None:
        if threading.get_ident() not in seen:
            seen.add(threading.get_ident())
            first_read.wait()

    _widen_the_race_window(monkeypatch, pause)

    errors = _run_writers()
    monkeypatch.undo()

    assert errors == []
    problems = [item for item in verify_chain() if isinstance(item, ChainProblem)]
    assert problems, "writers without the lock kept a linear chain: the race was not exercised"
    prev_hashes = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(prev_hashes) > len(set(prev_hashes))
