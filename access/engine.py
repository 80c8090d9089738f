"""The grant engine: the loop that makes AWS match the grants.

Every task cluster runs it (config.loops; declared in access/loops.py). One copy holds the
"engine" lease and works; the others stand by and take over within about a second and a
half of its death. While it holds the lease, every tick (GRANT_ENGINE_TICK) it revokes the
grants whose expiry has passed and reconciles, on a pool of GRANT_ENGINE_THREADS threads,
every assignment planned for now (grants.plan_reconcile: new approvals, revokes, expiries,
retries after a failure). Every SWEEP_EVERY it also runs the sweep: the safety net for
work left unplanned, pending requests past their deadline, and expiry warnings.

On a stop it takes no new work, gives the reconciliations running a moment to finish,
and releases its lease at once, so that another cluster's engine (or the next start)
carries on within a tick. A reconciliation still running then is abandoned with its
process; its assignment's lease runs out within grants.LEASE and it is done again (every
driver call is idempotent).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from access import leases
from access.leases import LeaseKind
from access.models import Assignment
from access.services import grants, requests
from config.loops import Stop, keep_connections

logger = logging.getLogger(__name__)

ENGINE_LEASE = leases.name(LeaseKind.ENGINE)
# Renewed four times per length by its own thread; a dead engine's lease runs out within it.
LEASE_LENGTH = timedelta(seconds=1.5)
# How often an engine standing by looks whether the lease is free.
STANDBY_POLL = 0.25
# How long a stopping engine waits for the reconciliations it started.
STOP_GRACE = 1.0
SWEEP_EVERY = 30.0
# How long the engine leaves an assignment whose reconciliation raised outside the driver.
ERROR_PAUSE = timedelta(seconds=30)


def engine_running() -> bool:
    """Whether a grant engine holds its lease now (shown to admins)."""
    return leases.is_held(ENGINE_LEASE)


def run(stop: Stop) -> None:
    """The loop: stands by until it holds the engine lease, then works until the stop or
    until the lease is lost (then it stands by again)."""
    while not stop.is_set():
        with leases.hold(ENGINE_LEASE, LEASE_LENGTH) as lease:
            if lease is not None:
                logger.info("The grant engine holds its lease (%s).", lease.holder)
                work(stop, lease.lost)
                continue
        stop.wait(STANDBY_POLL)
        keep_connections()


def work(stop: Stop, lost: threading.Event | None = None) -> dict[str, int]:
    """Ticks until ``stop`` (or ``lost``, the lease) is set. Returns what it did."""
    tick = settings.GRANT_ENGINE_TICK
    threads = settings.GRANT_ENGINE_THREADS
    done = {"expired": 0, "reconciled": 0, "replanned": 0, "requests_expired": 0, "warned": 0}
    in_flight: set[int] = set()
    guard = threading.Lock()

    def reconcile(pk: int) -> None:
        try:
            grants.reconcile_assignment(pk)
        except Exception:  # recorded on the grants by reconcile itself where it can be
            logger.exception("The grant engine could not reconcile assignment %s", pk)
            try:
                # Not again on the next tick: an error outside the driver call (the
                # database) would otherwise repeat every tick.
                Assignment.objects.filter(pk=pk).update(
                    next_attempt_at=timezone.now() + ERROR_PAUSE
                )
            except DatabaseError:
                logger.exception("Could not plan assignment %s again", pk)
        finally:
            with guard:
                in_flight.discard(pk)

    last_sweep = 0.0
    pool = _Pool(threads, reconcile)
    try:
        while not stop.is_set() and not (lost is not None and lost.is_set()):
            wait = tick
            try:
                now = timezone.now()
                done["expired"] += grants.expire_due_grants(now)
                with guard:
                    busy = set(in_flight)
                # Only what the threads can start now: the rest stays planned, unclaimed,
                # for whichever engine runs the next tick.
                room = threads - len(busy)
                if room > 0:
                    for pk in grants.due_assignments(now, limit=room, exclude=busy):
                        with guard:
                            in_flight.add(pk)
                        pool.submit(pk)
                        done["reconciled"] += 1
                if time.monotonic() - last_sweep >= SWEEP_EVERY:
                    last_sweep = time.monotonic()
                    for key, count in sweep(now).items():
                        done[key] += count
                upcoming = grants.next_expiry(now)
                if upcoming is not None:
                    wait = min(tick, max(0.0, (upcoming - timezone.now()).total_seconds()))
            except DatabaseError:
                logger.exception("The grant engine's tick failed; trying again next tick.")
                wait = max(tick, 1.0)
            stop.wait(max(wait, 0.02))
            keep_connections()
    finally:
        dropped = pool.shutdown()
        with guard:
            in_flight.difference_update(dropped)
        give_up = time.monotonic() + STOP_GRACE
        while time.monotonic() < give_up:
            with guard:
                if not in_flight:
                    break
            time.sleep(0.02)
        with guard:
            if in_flight:
                logger.warning(
                    "The grant engine stopped with %s reconciliation(s) still running; "
                    "they are done again once their leases run out.",
                    len(in_flight),
                )
    return done


class _Pool:
    """The engine's threads. Each keeps its own database connection from one
    reconciliation to the next (opening one costs more than a reconciliation's queries,
    and what PostgreSQL prepared for it stays) and closes it when it ends."""

    def __init__(self, size: int, work: Callable[[int], None]) -> None:
        self.work = work
        self.todo: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._run, name=f"grant-engine-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, pk: int) -> None:
        self.todo.put(pk)

    def shutdown(self) -> list[int]:
        """Each thread ends after the reconciliation in hand. Returns what was submitted
        but not started: it stays planned for the next engine."""
        dropped = []
        while True:
            try:
                pk = self.todo.get_nowait()
            except queue.Empty:
                break
            if pk is not None:
                dropped.append(pk)
        for _ in self.threads:
            self.todo.put(None)
        return dropped

    def _run(self) -> None:
        try:
            while (pk := self.todo.get()) is not None:
                try:
                    self.work(pk)
                    keep_connections()
                except Exception:  # the thread must outlive any one assignment
                    logger.exception("The grant engine's thread failed on assignment %s", pk)
        finally:
            connection.close()


def sweep(now: datetime | None = None) -> dict[str, int]:
    """The time-driven duties besides expiry, and the safety net under planning: work
    left with nothing planned, pending requests past their deadline, expiry warnings."""
    now = now or timezone.now()
    return {
        "replanned": grants.requeue_stalled(now),
        "requests_expired": requests.expire_pending_requests(now),
        "warned": requests.send_expiry_warnings(now),
    }


def reconcile_due(now: datetime | None = None, limit: int = 500) -> int:
    """One pass of the engine's work, here and now and one at a time (one-off commands and
    tests): expired grants, then every assignment due. Returns how many it reconciled."""
    now = now or timezone.now()
    grants.expire_due_grants(now)
    due = grants.due_assignments(now, limit=limit, exclude=set())
    for pk in due:
        grants.reconcile_assignment(pk)
    return len(due)
