"""django-q2 tasks of the access workflow: they take ids, re-read rows and are idempotent."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

logger = logging.getLogger("access.tasks")

TIMER_LEASE = "grant-timer"
# A timer run waiting to take over from the running one (see run_grant_timer).
TIMER_NEXT = "grant-timer-next"
# How long a successor waits for the running timer to hand over. It hands over within a
# tick, once the reconciliations it started have finished; a timer that died lets its lease
# run out within TIMER_LEASE_LENGTH. Waiting that long means no gap between runs.
TIMER_HANDOVER = 75.0
# Seconds of the task timeout kept for the calls a stopping run waits for.
DRAIN_ALLOWANCE = 180.0
# The timer's lease, renewed while it runs.
TIMER_LEASE_LENGTH = timedelta(seconds=60)
# How long the engine leaves an assignment whose reconciliation raised outside the driver.
ENGINE_ERROR_PAUSE = timedelta(seconds=30)
# How long a waiting successor's announcement lasts unless renewed (it renews every tick).
ANNOUNCEMENT = timedelta(seconds=5)


def reconcile_assignment(assignment_id: int) -> str:
    from access.services import grants

    return grants.reconcile_assignment(assignment_id).action


def reapply_assignment(assignment_id: int) -> str:
    """Apply again an assignment AWS holds (an OU's accounts changed). The request is kept
    on the assignment until an apply succeeds, so a busy or failed attempt does not lose it."""
    from access.models import Assignment
    from access.services import grants

    Assignment.objects.filter(pk=assignment_id).update(reapply_requested=True)
    return grants.reconcile_assignment(assignment_id, force=True).action


def sweep() -> dict[str, int]:
    """One pass of every time-driven duty: expired grants, due retries, pending requests
    past their deadline, expiry warnings."""
    from access.services import grants, requests

    now = timezone.now()
    return {
        "expired": grants.expire_due_grants(now),
        "replanned": grants.requeue_stalled(now),
        "retried": grants.retry_due_assignments(now),
        "requests_expired": requests.expire_pending_requests(now),
        "warned": requests.send_expiry_warnings(now),
    }


def timer_seconds() -> float:
    """How long one grant timer run may last: GRANT_TIMER_SECONDS, else the task timeout
    less DRAIN_ALLOWANCE, so that the calls still running when it stops (an Identity Center
    assignment is polled up to 2 minutes) end before the cluster would kill the worker. A
    run normally ends much sooner, when the next scheduled run takes over."""
    configured = getattr(settings, "GRANT_TIMER_SECONDS", None)
    if configured:
        return float(configured)
    timeout = float(getattr(settings, "Q_CLUSTER", {}).get("timeout") or 600)
    return max(58.0, timeout - DRAIN_ALLOWANCE)


def run_grant_timer(seconds: float | None = None) -> dict[str, int]:
    """The grant engine: runs under a lease and, every tick, revokes the grants whose expiry
    has passed and reconciles in AWS, on a pool of threads, every assignment planned for
    now (new approvals, revokes, expiries, due retries). So an approval is applied, and an
    expired grant's access taken away, within about a second, without waiting in the task
    queue behind other work. Returns what it did.

    The schedule starts a run every minute, but a queued run may wait behind other tasks
    for longer than that. So a run does not stop after a minute: it hands over. A new run
    that finds the timer held announces itself (the TIMER_NEXT lease) and the running one
    stops within a tick, so there is no gap between runs however late the next one comes;
    a run ends by itself only after ``seconds`` (timer_seconds())."""
    from access.services import grants, leases, requests

    seconds = seconds if seconds is not None else timer_seconds()
    tick = float(getattr(settings, "GRANT_TIMER_TICK", 0.25))
    threads = int(getattr(settings, "GRANT_ENGINE_THREADS", 8))
    deadline = time.monotonic() + seconds
    lease = leases.claim(TIMER_LEASE, TIMER_LEASE_LENGTH)
    if lease is None:
        lease = _take_over(tick, deadline)
        if lease is None:
            return {"skipped": 1}
    done = {"expired": 0, "reconciled": 0, "requests_expired": 0, "warned": 0}
    in_flight: set[int] = set()
    guard = threading.Lock()

    def reconcile(pk: int) -> None:
        try:
            grants.reconcile_assignment(pk)
        except Exception:  # recorded on the grants by reconcile itself where it can be
            logger.exception("The grant engine could not reconcile assignment %s", pk)
            try:
                # Not again on the next tick: an error outside the driver call (the
                # database) would otherwise repeat four times a second.
                from access.models import Assignment

                Assignment.objects.filter(pk=pk).update(
                    next_attempt_at=timezone.now() + ENGINE_ERROR_PAUSE
                )
            except Exception:
                logger.exception("Could not plan assignment %s again", pk)
        finally:
            connection.close()  # each pool thread's own connection
            with guard:
                in_flight.discard(pk)

    last_slow = last_renewal = 0.0
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grant-engine")
    try:
        while time.monotonic() < deadline and not _successor_waiting():
            if time.monotonic() - last_renewal >= TIMER_LEASE_LENGTH.total_seconds() / 4:
                # Held while running; a crashed run's lease runs out within a minute.
                last_renewal = time.monotonic()
                if not _renew(lease):
                    logger.warning("The grant timer lost its lease; stopping this run.")
                    break
            wait = tick
            try:
                now = timezone.now()
                done["expired"] += grants.expire_due_grants(now)
                with guard:
                    busy = set(in_flight)
                room = threads * 4 - len(busy)
                if room > 0:
                    for pk in grants.due_assignments(now, limit=room, exclude=busy):
                        with guard:
                            in_flight.add(pk)
                        pool.submit(reconcile, pk)
                        done["reconciled"] += 1
                if time.monotonic() - last_slow >= 30:
                    last_slow = time.monotonic()
                    done["requests_expired"] += requests.expire_pending_requests(now)
                    done["warned"] += requests.send_expiry_warnings(now)
                upcoming = grants.next_expiry(now)
                if upcoming is not None:
                    wait = min(tick, max(0.0, (upcoming - timezone.now()).total_seconds()))
            except DatabaseError:
                logger.exception("The grant engine's tick failed; trying again next tick.")
                wait = max(tick, 1.0)
            time.sleep(max(wait, 0.02))
            close_old_connections()
    finally:
        # The lease is held until the pool's work is done: a successor must not start the
        # same assignments (their own leases would stop it, but it would wait for nothing).
        pool.shutdown(wait=False, cancel_futures=True)
        leases.release(lease)
        pool.shutdown(wait=True)
    return done


def _take_over(tick: float, deadline: float) -> tuple[str, str] | None:
    """Waits, announced as the successor, for the running timer to hand over; None when
    another successor is already waiting or the running timer does not let go."""
    from access.services import leases

    waiting = leases.claim(TIMER_NEXT, ANNOUNCEMENT)
    if waiting is None:
        return None
    try:
        give_up = min(deadline, time.monotonic() + TIMER_HANDOVER)
        while time.monotonic() < give_up:
            time.sleep(tick)
            close_old_connections()
            _renew(waiting, ANNOUNCEMENT)
            lease = leases.claim(TIMER_LEASE, TIMER_LEASE_LENGTH)
            if lease is not None:
                return lease
        return None
    finally:
        leases.release(waiting)


def _successor_waiting() -> bool:
    from access.models import Lease

    return Lease.objects.filter(name=TIMER_NEXT, until__gt=timezone.now()).exists()


def _renew(lease: tuple[str, str], length: timedelta = TIMER_LEASE_LENGTH) -> bool:
    from access.models import Lease

    name, holder = lease
    return bool(
        Lease.objects.filter(name=name, holder=holder).update(until=timezone.now() + length)
    )


def deliver_email(recipients: list[str], subject: str, body: str) -> int:
    """Sends one notification; django-q2 retries the task if the mail server fails."""
    from django.core.mail import send_mail

    return send_mail(subject, body, None, recipients, fail_silently=False)
