"""django-q2 tasks of the access workflow: they take ids, re-read rows and are idempotent."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

logger = logging.getLogger("access.tasks")

TIMER_LEASE = "grant-timer"


def enqueue(func: str, *args: Any) -> None:
    """Queue a task; with TASKS_INLINE (tests, one-off commands) run it here and now."""
    if getattr(settings, "TASKS_INLINE", False):
        from django.utils.module_loading import import_string

        import_string(func)(*args)
        return
    from django_q.tasks import async_task

    async_task(func, *args, group=func.rsplit(".", 1)[-1])


def reconcile_assignment(assignment_id: int) -> str:
    from access.services import grants

    return grants.reconcile_assignment(assignment_id).action


def reapply_assignment(assignment_id: int) -> str:
    from access.services import grants

    return grants.reconcile_assignment(assignment_id, force=True).action


def sweep() -> dict[str, int]:
    """One pass of every time-driven duty: expired grants, due retries, pending requests
    past their deadline, expiry warnings."""
    from access.services import grants, requests

    now = timezone.now()
    return {
        "expired": grants.expire_due_grants(now),
        "retried": grants.retry_due_assignments(now),
        "requests_expired": requests.expire_pending_requests(now),
        "warned": requests.send_expiry_warnings(now),
    }


def run_grant_timer(seconds: float | None = None) -> dict[str, int]:
    """Runs for about a minute under a lease, waking at the next expiry (polling at most
    every TIMER_TICK seconds for grants created meanwhile) and at due retries, so a grant
    is revoked within about a second of its expiry. Returns what it did."""
    from access.services import grants, leases, requests

    seconds = seconds if seconds is not None else getattr(settings, "GRANT_TIMER_SECONDS", 58.0)
    tick = float(getattr(settings, "GRANT_TIMER_TICK", 0.5))
    deadline = time.monotonic() + seconds
    lease = leases.claim(TIMER_LEASE, timedelta(seconds=seconds + 30))
    if lease is None:
        return {"skipped": 1}
    done = {"expired": 0, "retried": 0, "requests_expired": 0, "warned": 0}
    last_slow = 0.0
    try:
        while time.monotonic() < deadline:
            now = timezone.now()
            done["expired"] += grants.expire_due_grants(now)
            done["retried"] += grants.retry_due_assignments(now)
            if time.monotonic() - last_slow >= 30:
                last_slow = time.monotonic()
                done["requests_expired"] += requests.expire_pending_requests(now)
                done["warned"] += requests.send_expiry_warnings(now)
            upcoming = grants.next_expiry(now)
            wait = tick
            if upcoming is not None:
                wait = min(tick, max(0.0, (upcoming - timezone.now()).total_seconds()))
            time.sleep(max(wait, 0.05))
            close_old_connections()
    finally:
        leases.release(lease)
    return done


def deliver_email(recipients: list[str], subject: str, body: str) -> int:
    """Sends one notification; django-q2 retries the task if the mail server fails."""
    from django.core.mail import send_mail

    return send_mail(subject, body, None, recipients, fail_silently=False)
