"""Real-time sync's loop: poll every app's events queue, one poller per queue at a time.

Every task cluster runs the loop (aws_integration/loops.py). Each app's queue is polled
under the lease "poller:<app id>": one cluster's loop polls it, the others stand by and
take over within POLLER_LEASE of its death. Receives long-poll for WAIT_SECONDS only, so
that a stop is seen within about a second; a batch stopped half-way leaves its unhandled
messages on the queue, and SQS delivers them again after their visibility timeout.
"""

from __future__ import annotations

import time
from datetime import timedelta

from access import leases
from access.leases import LeaseKind
from aws_integration.events.poller import poll_queue
from aws_integration.models import AwsApp
from config.loops import Stop, keep_connections

# A holder polls one app's queue this long, then looks at the others (apps share the loop).
SLICE_SECONDS = 30.0
# SQS's long-poll wait per receive.
WAIT_SECONDS = 1
# Renewed four times per length while polling; a dead poller's lease runs out within it.
POLLER_LEASE = timedelta(seconds=1.5)
# How often a loop with no queue to poll looks again.
STANDBY_POLL = 0.25


def poller_lease(app_id: int) -> str:
    return leases.name(LeaseKind.POLLER, app_id)


def run(stop: Stop) -> None:
    """The loop: polls the queues it can hold until the stop."""
    while not stop.is_set():
        if not poll_all_queues(SLICE_SECONDS, WAIT_SECONDS, stop=stop):
            stop.wait(STANDBY_POLL)
        keep_connections()


def poll_all_queues(
    max_seconds: float = SLICE_SECONDS, wait_seconds: int = WAIT_SECONDS, stop: Stop | None = None
) -> dict[int, dict[str, int]]:
    """Polls the queue of every active app that has one and whose lease is free; apps
    share the time budget. Returns counters per app id polled."""
    app_ids = list(
        AwsApp.objects.filter(is_active=True)
        .exclude(sqs_queue_url="")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    held = leases.held_names([poller_lease(pk) for pk in app_ids])
    free = [pk for pk in app_ids if poller_lease(pk) not in held]
    results: dict[int, dict[str, int]] = {}
    started = time.monotonic()
    for index, app_id in enumerate(free):
        remaining = max_seconds - (time.monotonic() - started)
        if remaining <= 0 or (stop is not None and stop.is_set()):
            break
        share = remaining / (len(free) - index)
        counts = poll_app_queue(app_id, max_seconds=share, wait_seconds=wait_seconds, stop=stop)
        if counts is not None:
            results[app_id] = counts
    return results


def poll_app_queue(
    app_id: int,
    max_seconds: float = SLICE_SECONDS,
    wait_seconds: int = WAIT_SECONDS,
    stop: Stop | None = None,
) -> dict[str, int] | None:
    """Polls one app's queue if its lease can be claimed; None when another poller holds
    it (or the app is gone, inactive or without a queue)."""
    app = AwsApp.objects.filter(pk=app_id, is_active=True).exclude(sqs_queue_url="").first()
    if app is None:
        return None
    with leases.hold(poller_lease(app_id), POLLER_LEASE) as lease:
        if lease is None:
            return None

        def keep_going() -> bool:
            return not lease.lost.is_set() and not (stop is not None and stop.is_set())

        return poll_queue(
            app, max_seconds=max_seconds, wait_seconds=wait_seconds, keep_going=keep_going
        )
