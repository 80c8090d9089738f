"""What the grant engine guarantees under load, restarts and slow calls. The provider is a
stand-in driver that holds access in memory (the engine, not AWS, is under test);
assertions are on what the provider holds."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from access import drivers, engine, leases
from access.choices import GrantSource, GrantStatus
from access.leases import LeaseKind
from access.models import AccessLevel, Assignment, Grant
from access.services import grants as grant_service
from config import queue
from config.loops import StopAfter


def reapply(assignment_id: int) -> str:
    """Sync asks for a fresh apply (an OU's accounts changed)."""
    Assignment.objects.filter(pk=assignment_id).request_reapply()
    return grant_service.reconcile_assignment(assignment_id, force=True).action


class Provider:
    """Holds (assignment, account) pairs. An OU-like apply assigns every account listed in
    ``accounts``; changes to one user's assignments run under one lock key, as the Identity
    Center drivers declare. ``gate`` (per access level name) makes an apply wait, like a long
    Identity Center poll."""

    def __init__(self) -> None:
        self.accounts = {"acct-1"}
        self.held: set[tuple[int, str]] = set()
        self.lock = threading.Lock()
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.fail_next = False
        self.during_apply: list[str] = []
        self.on_apply = None

    def lock_key(self, assignment) -> str:
        return f"test-user:{assignment.user_id}"

    def apply(self, assignment):
        name = assignment.access_level.name
        if name in self.started:
            self.started[name].set()
        if name in self.gates:
            self.gates[name].wait(timeout=30)
        if self.on_apply is not None:
            self.on_apply(assignment)
        if self.fail_next:
            self.fail_next = False
            raise drivers.DriverError("One account refused.")
        with self.lock:
            self.held |= {(assignment.pk, account) for account in self.accounts}
        return drivers.Outcome(state={"accounts": sorted(self.accounts)}, note="applied")

    def remove(self, assignment):
        with self.lock:
            self.held = {h for h in self.held if h[0] != assignment.pk}
        return drivers.Outcome(note="removed")

    def holds(self, assignment_id: int) -> set[str]:
        with self.lock:
            return {account for pk, account in self.held if pk == assignment_id}


@pytest.fixture
def provider(personas, monkeypatch, settings):
    settings.TASKS_INLINE = False
    fake = Provider()
    monkeypatch.setitem(drivers._registry, personas.resource.type, fake)
    return fake


@pytest.fixture
def queued(monkeypatch):
    made: list[tuple] = []
    monkeypatch.setattr(queue, "enqueue", lambda *args: made.append(args))
    return made


def level(personas, name: str) -> AccessLevel:
    return AccessLevel.objects.create(resource=personas.resource, remote_id=f"ps-{name}", name=name)


def make_grant(personas, access_level, expires_at=None, user=None) -> Grant:
    return grant_service.create_grant(
        user=user or personas.requester,
        resource=personas.resource,
        access_level=access_level,
        expires_at=expires_at,
        source=GrantSource.ADMIN,
        actor=personas.admin,
    )


def needs_real_concurrency() -> None:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]  # SQLite's
        pytest.skip("Concurrent writers: run on PostgreSQL (DATABASE_URL=postgres://...).")


# A reapply that finds the user's assignments busy is kept until it is done
def test_a_reapply_that_finds_the_users_assignments_busy_still_reaches_an_account_that_joined(
    personas, provider, queued
):
    made = make_grant(personas, level(personas, "OU"))
    grant_service.reconcile_assignment(made.assignment_id)
    assert provider.holds(made.assignment_id) == {"acct-1"}

    # An account joined the OU; sync asks for a reapply while another change to the same
    # user's assignments (another of their grants) holds the user's lock.
    provider.accounts.add("acct-2")
    other = leases.claim(f"lock:test-user:{personas.requester.pk}", grant_service.LEASE)
    assert other is not None
    assert reapply(made.assignment_id) == "busy"
    leases.release(other)

    # The engine takes what is planned, a moment later.
    with time_machine.travel(timezone.now() + timedelta(seconds=2), tick=False):
        for pk in grant_service.due_assignments(timezone.now(), limit=10, exclude=set()):
            grant_service.reconcile_assignment(pk)

    assert provider.holds(made.assignment_id) == {"acct-1", "acct-2"}


# An engine killed while holding its lease does not keep the next one idle
def test_an_engine_killed_with_its_lease_held_is_taken_over_once_the_lease_runs_out(
    personas, provider, queued, monkeypatch
):
    expires_at = timezone.now() + timedelta(hours=1)
    made = make_grant(personas, level(personas, "L"), expires_at)
    grant_service.reconcile_assignment(made.assignment_id)
    monkeypatch.setattr(engine, "keep_connections", lambda: None)

    with time_machine.travel(expires_at + timedelta(seconds=5), tick=True) as clock:
        # A cluster holding the engine's lease is killed (SIGKILL: nothing released).
        assert leases.claim(engine.ENGINE_LEASE, engine.LEASE_LENGTH) is not None
        engine.run(StopAfter(0.3))  # another cluster's engine stands by
        made.refresh_from_db()
        assert made.status == GrantStatus.ACTIVE

        clock.shift(engine.LEASE_LENGTH)  # the dead engine's lease runs out
        engine.run(StopAfter(1.0))

    made.refresh_from_db()
    assert made.status != GrantStatus.ACTIVE


# One failed database statement does not end the engine run
def test_a_transient_database_error_in_one_tick_does_not_end_the_engine_run(
    personas, provider, queued, monkeypatch
):
    expires_at = timezone.now() + timedelta(hours=1)
    made = make_grant(personas, level(personas, "L"), expires_at)
    grant_service.reconcile_assignment(made.assignment_id)
    monkeypatch.setattr(engine, "keep_connections", lambda: None)
    real = grant_service.expire_due_grants
    calls = {"n": 0}

    def locked_once(now=None, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("database is locked")
        return real(now, *args, **kwargs)

    monkeypatch.setattr(grant_service, "expire_due_grants", locked_once)
    with time_machine.travel(expires_at + timedelta(seconds=5), tick=True):
        done = engine.work(StopAfter(2.5))

    assert done["expired"] == 1


# The assignment and lock leases are renewed during a long driver call
@pytest.mark.django_db(transaction=True)
def test_an_assignment_being_applied_longer_than_its_lease_cannot_be_started_again(
    personas, provider, queued, monkeypatch
):
    needs_real_concurrency()  # the leases are renewed from their own threads
    made = make_grant(personas, level(personas, "OU"))
    # Leases of a second, renewed every 0.25 s: the call below outlives several of them.
    monkeypatch.setattr(grant_service, "LEASE", timedelta(seconds=1))
    startable: list[str] = []

    def long_apply(assignment) -> None:
        # Fifty accounts below the OU in Identity Center take minutes; here, three leases.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            mine = leases.claim(leases.name(LeaseKind.ASSIGNMENT, assignment.pk), timedelta(days=1))
            if mine is not None:
                startable.append("another engine or worker could start this assignment")
                leases.release(mine)
            lock = leases.claim(f"lock:{provider.lock_key(assignment)}", timedelta(days=1))
            if lock is not None:
                startable.append("another change to the user's assignments could run")
                leases.release(lock)
            time.sleep(0.2)

    provider.on_apply = long_apply
    grant_service.reconcile_assignment(made.assignment_id)

    assert startable == []
    assert provider.holds(made.assignment_id) == {"acct-1"}


# A revoke that commits while a retry is finishing is removed without the sweep
@pytest.mark.django_db(transaction=True)
def test_a_revoke_committed_while_a_retry_finishes_is_removed_without_waiting_for_the_sweep(
    personas, provider, queued
):
    needs_real_concurrency()
    made = make_grant(personas, level(personas, "OU"))
    grant_service.reconcile_assignment(made.assignment_id)
    assignment_id = made.assignment_id
    # A reapply failed in one account: the assignment stays present, a retry is planned.
    provider.fail_next = True
    assert reapply(assignment_id) == "failed"
    running = leases.claim(engine.ENGINE_LEASE, timedelta(minutes=5))  # an engine runs
    assert running is not None

    revoked_uncommitted = threading.Event()
    go = threading.Event()
    errors: list[BaseException] = []

    def admin_revokes() -> None:
        try:
            with transaction.atomic():
                grant = Grant.objects.get(pk=made.pk)
                grant_service.revoke_grant(grant, actor=personas.admin, reason="Left the team")
                revoked_uncommitted.set()
                go.wait(timeout=3)  # a fixed engine waits for this commit instead
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    with time_machine.travel(timezone.now() + timedelta(seconds=6), tick=True):
        admin = threading.Thread(target=admin_revokes)
        admin.start()
        assert revoked_uncommitted.wait(timeout=30)
        # The engine's thread runs the due retry while the revoke is committing.
        grant_service.reconcile_assignment(assignment_id)
        go.set()
        admin.join(timeout=30)
        assert not errors, errors

        made.refresh_from_db()
        due = grant_service.due_assignments(timezone.now(), limit=10, exclude=set())
        planned = assignment_id in due or any(assignment_id in q for q in queued[1:])
        removed = made.status == GrantStatus.REVOKED and not provider.holds(assignment_id)
        leases.release(running)
    # Today neither: the grant is revoking, nothing is planned and the access stays in AWS
    # until the sweep finds it stalled (2 min after the last change, at a sweep every 5 min).
    assert removed or planned, "the revoke's reconciliation was lost"


# A new engine does not wait out the old engine's long call
@pytest.mark.django_db(transaction=True)
def test_a_new_grant_is_applied_within_seconds_while_the_stopped_engine_still_has_a_long_call(
    personas, provider, queued, settings
):
    needs_real_concurrency()
    settings.GRANT_ENGINE_TICK = 0.1
    slow, fast = level(personas, "Slow"), level(personas, "Fast")
    provider.gates["Slow"] = threading.Event()
    provider.started["Slow"] = threading.Event()
    errors: list[BaseException] = []

    def run(stop: StopAfter) -> None:
        try:
            engine.run(stop)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    first_stop, second_stop = StopAfter(30), StopAfter(10)
    first = threading.Thread(target=run, args=(first_stop,))
    first.start()
    second = None
    try:
        deadline = time.monotonic() + 10
        while not engine.engine_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        make_grant(personas, slow)  # an Identity Center poll that takes a while
        assert provider.started["Slow"].wait(timeout=10)

        first_stop.set()  # its cluster stops (a deploy)
        second = threading.Thread(target=run, args=(second_stop,))  # the next cluster's
        second.start()

        later = make_grant(personas, fast, user=personas.manager)  # not under the slow lock
        assert queued == []  # planned, never queued
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            later.refresh_from_db()
            if later.status == GrantStatus.ACTIVE:
                break
            time.sleep(0.1)
        assert later.status == GrantStatus.ACTIVE, (
            "no engine took new work while the old one still had its long call"
        )
    finally:
        provider.gates["Slow"].set()
        second_stop.set()
        first.join(timeout=60)
        if second is not None:
            second.join(timeout=60)
        # An engine returns after its grace even if a thread is still inside its slow
        # call (by design: the lease covers it). The test's database is emptied next:
        # wait for the engines' threads, so none is left inside a transaction.
        for thread in threading.enumerate():
            if thread.name.startswith("grant-engine-"):
                thread.join(timeout=60)
    assert not errors, errors
