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

from access import drivers, tasks
from access.choices import GrantSource, GrantStatus
from access.models import AccessLevel, Grant
from access.services import grants as grant_service
from access.services import leases
from config import queue


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
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
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
    assert tasks.reapply_assignment(made.assignment_id) == "busy"
    leases.release(other)

    # The engine takes what is planned, a moment later.
    with time_machine.travel(timezone.now() + timedelta(seconds=2), tick=False):
        for pk in grant_service.due_assignments(timezone.now(), limit=10, exclude=set()):
            grant_service.reconcile_assignment(pk)

    assert provider.holds(made.assignment_id) == {"acct-1", "acct-2"}


# A successor killed while waiting does not keep later engines idle
class Killed(BaseException):
    """The worker process dies here (SIGKILL: no finally block runs)."""


def test_a_successor_killed_while_waiting_does_not_keep_the_next_engine_from_expiring_grants(
    personas, provider, queued, monkeypatch
):
    expires_at = timezone.now() + timedelta(hours=1)
    made = make_grant(personas, level(personas, "L"), expires_at)
    grant_service.reconcile_assignment(made.assignment_id)
    monkeypatch.setattr(tasks, "close_old_connections", lambda: None)

    with time_machine.travel(expires_at + timedelta(seconds=5), tick=True) as clock:
        # A deploy restarts the cluster: the running engine and the run waiting to take
        # over from it are both killed.
        assert leases.claim(tasks.TIMER_LEASE, tasks.TIMER_LEASE_LENGTH) is not None

        def killed(seconds: float) -> None:
            raise Killed

        with monkeypatch.context() as m:
            m.setattr(tasks.time, "sleep", killed)
            m.setattr(leases, "release", lambda lease: None)
            with pytest.raises(Killed):
                tasks._take_over(0.1, time.monotonic() + 10)

        # The dead engine's lease runs out; the next scheduled run starts.
        clock.shift(tasks.TIMER_LEASE_LENGTH + timedelta(seconds=5))
        done = tasks.run_grant_timer(seconds=1.0)

    made.refresh_from_db()
    assert done.get("expired") == 1, done
    assert made.status != GrantStatus.ACTIVE


# One failed database statement does not end the engine run
def test_a_transient_database_error_in_one_tick_does_not_end_the_engine_run(
    personas, provider, queued, monkeypatch
):
    expires_at = timezone.now() + timedelta(hours=1)
    made = make_grant(personas, level(personas, "L"), expires_at)
    grant_service.reconcile_assignment(made.assignment_id)
    monkeypatch.setattr(tasks, "close_old_connections", lambda: None)
    real = grant_service.expire_due_grants
    calls = {"n": 0}

    def locked_once(now=None, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("database is locked")
        return real(now, *args, **kwargs)

    monkeypatch.setattr(grant_service, "expire_due_grants", locked_once)
    with time_machine.travel(expires_at + timedelta(seconds=5), tick=True):
        done = tasks.run_grant_timer(seconds=2.5)  # raises today: the run is over

    assert done["expired"] == 1


# The assignment and lock leases are renewed during a long driver call
@pytest.mark.django_db(transaction=True)
def test_an_assignment_being_applied_longer_than_its_lease_cannot_be_started_again(
    personas, provider, queued, monkeypatch
):
    needs_real_concurrency()  # the heartbeat writes from its own thread
    made = make_grant(personas, level(personas, "OU"))
    # Leases of a second, renewed every 0.1 s: the call below outlives several of them.
    monkeypatch.setattr(grant_service, "LEASE", timedelta(seconds=1))
    monkeypatch.setattr(grant_service, "HEARTBEAT", timedelta(seconds=0.1))
    startable: list[str] = []

    def long_apply(assignment) -> None:
        # Fifty accounts below the OU in Identity Center take minutes; here, three leases.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            now = timezone.now()
            if assignment.pk in grant_service.due_assignments(now, limit=10, exclude=set()):
                startable.append("another engine or worker would start this assignment")
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
    assert tasks.reapply_assignment(assignment_id) == "failed"
    engine = leases.claim(tasks.TIMER_LEASE, timedelta(minutes=5))  # an engine runs
    assert engine is not None

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
        leases.release(engine)
    # Today neither: the grant is revoking, nothing is planned and the access stays in AWS
    # until the sweep finds it stalled (2 min after the last change, at a sweep every 5 min).
    assert removed or planned, "the revoke's reconciliation was lost"


# A successor does not wait out the old engine's drain of a long call
@pytest.mark.django_db(transaction=True)
def test_a_new_grant_is_applied_within_seconds_while_the_old_engine_drains_a_long_call(
    personas, provider, queued, settings
):
    needs_real_concurrency()
    settings.GRANT_TIMER_TICK = 0.1
    slow, fast = level(personas, "Slow"), level(personas, "Fast")
    provider.gates["Slow"] = threading.Event()
    provider.started["Slow"] = threading.Event()
    errors: list[BaseException] = []

    def run(seconds: float) -> None:
        try:
            tasks.run_grant_timer(seconds=seconds)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=run, args=(30,))
    first.start()
    second = None
    try:
        deadline = time.monotonic() + 10
        while not grant_service.engine_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        make_grant(personas, slow)  # an Identity Center poll that takes a while
        assert provider.started["Slow"].wait(timeout=10)

        second = threading.Thread(target=run, args=(10,))  # the next scheduled run
        second.start()
        deadline = time.monotonic() + 10
        while not tasks._successor_waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the first run has seen its successor and stopped taking work

        later = make_grant(personas, fast, user=personas.manager)  # not under the slow lock
        assert queued == []  # an engine "runs": no task was queued for it
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            later.refresh_from_db()
            if later.status == GrantStatus.ACTIVE:
                break
            time.sleep(0.1)
        assert later.status == GrantStatus.ACTIVE, (
            "no engine took new work while the old one drained its long call"
        )
    finally:
        provider.gates["Slow"].set()
        first.join(timeout=60)
        if second is not None:
            second.join(timeout=60)
    assert not errors, errors
