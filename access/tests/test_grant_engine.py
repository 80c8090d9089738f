"""The grant engine (the timer's loop) applies planned assignments on its own thread pool,
without the task queue: approvals are applied and expired access is removed within ticks."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from access import drivers, engine
from access.choices import GrantSource, GrantStatus
from access.models import AccessLevel, Assignment, Grant
from access.services import grants as grant_service
from config import queue
from config.loops import StopAfter


class ThreadSafeProvider:
    """Stands in for one resource type's driver: the engine, not AWS, is under test here
    (the stand-in AWS is exercised by the driver, workflow and benchmark runs)."""

    def __init__(self) -> None:
        self.held: set[int] = set()
        self.lock = threading.Lock()

    def apply(self, assignment):
        with self.lock:
            self.held.add(assignment.pk)
        return drivers.Outcome(note="applied")

    def remove(self, assignment):
        with self.lock:
            self.held.discard(assignment.pk)
        return drivers.Outcome(note="removed")


@pytest.mark.django_db(transaction=True)
def test_the_engine_applies_new_grants_and_removes_expired_ones_without_the_task_queue(
    personas, monkeypatch, settings
):
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]  # SQLite's
        pytest.skip(
            "The engine's threads write concurrently; SQLite's shared-cache in-memory test "
            "database uses table locks that do not wait (the file database does, and the "
            "benchmark runs the engine on it)."
        )
    settings.TASKS_INLINE = False
    queued: list[tuple] = []
    monkeypatch.setattr(queue, "enqueue", lambda *args: queued.append(args))
    provider = ThreadSafeProvider()
    monkeypatch.setitem(drivers._registry, personas.resource.type, provider)
    levels = [
        AccessLevel.objects.create(resource=personas.resource, remote_id=f"ps-{n}", name=f"L{n}")
        for n in range(6)
    ]
    now = timezone.now()
    made = [
        grant_service.create_grant(
            user=personas.requester,
            resource=personas.resource,
            access_level=level,
            # Three expire within the run, three do not.
            expires_at=now + (timedelta(seconds=1) if n % 2 else timedelta(hours=1)),
            source=GrantSource.ADMIN,
            actor=personas.admin,
        )
        for n, level in enumerate(levels)
    ]
    # Planned, not queued: the engine takes them up.
    assert queued == []

    done = engine.work(StopAfter(3))

    statuses = {g.pk: Grant.objects.get(pk=g.pk).status for g in made}
    for n, grant in enumerate(made):
        expected = GrantStatus.REVOKED if n % 2 else GrantStatus.ACTIVE
        assert statuses[grant.pk] == expected, (n, statuses)
    held = {Assignment.objects.get(pk=g.assignment_id).pk for g in made[::2]}
    assert provider.held == held
    assert done["expired"] == 3
    # The engine did it all itself: no task was queued.
    assert queued == []


def test_an_engine_thread_outlives_an_assignment_that_fails_outside_the_reconcile():
    # A thread that died would leave its assignment "in flight" for good: the engine would
    # keep its lease and, its threads gone, reconcile nothing.
    done: list[int] = []
    finished = threading.Event()

    def work(pk: int) -> None:
        if pk == 1:
            raise RuntimeError("not a database error")
        done.append(pk)
        finished.set()

    pool = engine._Pool(1, work)
    try:
        pool.submit(1)
        pool.submit(2)
        assert finished.wait(10)
    finally:
        pool.shutdown()
    assert done == [2]


@pytest.mark.django_db(transaction=True)
def test_a_loop_opens_a_new_connection_after_an_error():
    # With prepared statements, an error can repeat on the same connection (a migration
    # changed what a prepared statement reads) although it still answers SELECT 1.
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]  # SQLite's wrapper only
        pytest.skip("Django never closes an in-memory SQLite database: run on PostgreSQL.")
    from config.loops import keep_connections

    connection.ensure_connection()
    keep_connections()
    assert connection.connection is not None  # kept while all is well
    connection.errors_occurred = True
    keep_connections()
    assert connection.connection is None
