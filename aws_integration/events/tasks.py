"""django-q2 tasks for real-time sync: poll every app's events queue under a lease."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from aws_integration.events.poller import poll_queue
from aws_integration.models import AwsApp

logger = logging.getLogger(__name__)

# The schedule runs the task every minute; polling a little less leaves room to finish.
POLL_SECONDS = 55
WAIT_SECONDS = 20
# A lease outlives a poll by this much (a receive may take WAIT_SECONDS past the budget,
# a refresh longer): a worker that died leaves a lease that expires soon after.
LEASE_MARGIN = timedelta(seconds=60)


def poll_all_queues(
    max_seconds: float = POLL_SECONDS, wait_seconds: int = WAIT_SECONDS
) -> dict[int, dict[str, int]]:
    """Polls the queue of every active app that has one, each under a lease so two workers
    never poll the same queue; apps share the time budget. Returns counters per app id."""
    app_ids = list(
        AwsApp.objects.filter(is_active=True)
        .exclude(sqs_queue_url="")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    results: dict[int, dict[str, int]] = {}
    started = time.monotonic()
    for index, app_id in enumerate(app_ids):
        remaining = max_seconds - (time.monotonic() - started)
        if remaining <= 0:
            break
        share = remaining / (len(app_ids) - index)
        counts = poll_app_queue(app_id, max_seconds=share, wait_seconds=wait_seconds)
        if counts is not None:
            results[app_id] = counts
    return results


def poll_app_queue(
    app_id: int, max_seconds: float = POLL_SECONDS, wait_seconds: int = WAIT_SECONDS
) -> dict[str, int] | None:
    """Polls one app's queue if its lease can be claimed; None when another worker holds
    it (or the app is gone, inactive or without a queue)."""
    lease_length = timedelta(seconds=max_seconds) + LEASE_MARGIN
    lease = claim_poller_lease(app_id, lease_length)
    if lease is None:
        return None
    try:
        app = AwsApp.objects.get(pk=app_id)

        def keep_going() -> bool:
            nonlocal lease
            lease = renew_poller_lease(app_id, lease, lease_length)
            return lease is not None

        return poll_queue(
            app, max_seconds=max_seconds, wait_seconds=wait_seconds, keep_going=keep_going
        )
    finally:
        if lease is not None:
            release_poller_lease(app_id, lease)


def claim_poller_lease(app_id: int, length: timedelta) -> datetime | None:
    """Claims the app's poller lease with a conditional update (only when free or expired);
    returns the lease's end, which identifies it, or None when it is held."""
    if not AwsApp.objects.filter(pk=app_id, is_active=True).exclude(sqs_queue_url="").exists():
        return None
    now = timezone.now()
    until = now + length
    # Only columns of AwsApp's own table in the condition: with one of App's (is_active)
    # Django would update "WHERE pk IN (SELECT ...)", and PostgreSQL does not re-check such
    # a subquery after waiting for a concurrent claim, so both claims would succeed.
    claimed = (
        AwsApp.objects.filter(pk=app_id)
        .filter(Q(poller_lease_until__isnull=True) | Q(poller_lease_until__lte=now))
        .update(poller_lease_until=until)
    )
    return until if claimed else None


def renew_poller_lease(app_id: int, lease: datetime | None, length: timedelta) -> datetime | None:
    """Extends a lease still ours; None when it was lost (it expired and another took it)."""
    if lease is None:
        return None
    until = max(timezone.now() + length, lease)
    renewed = AwsApp.objects.filter(pk=app_id, poller_lease_until=lease).update(
        poller_lease_until=until
    )
    if not renewed:
        logger.warning("Lost the events poller lease of app %s", app_id)
    return until if renewed else None


def release_poller_lease(app_id: int, lease: datetime) -> None:
    AwsApp.objects.filter(pk=app_id, poller_lease_until=lease).update(poller_lease_until=None)
