"""django-q2 tasks for sync. They take ids, re-read rows, and are safe to run twice."""

from __future__ import annotations

import logging

from django.db.models import Max, Q
from django.utils import timezone

from aws_integration.choices import SyncKind
from aws_integration.models import AwsApp
from aws_integration.sync import engine, services

logger = logging.getLogger("aws_integration.sync")


def run_sync(run_id: int) -> str:
    """Runs a queued sync; a run already claimed by another worker is left alone."""
    run = engine.run_sync(run_id)
    return f"{run.status}: {run.message}" if run.message else run.status


def schedule_full_syncs() -> int:
    """Queues a full sync of each active app whose interval has passed since its last full
    sync was queued. Returns how many were queued."""
    now = timezone.now()
    apps = AwsApp.objects.filter(is_active=True).annotate(
        last_full=Max("sync_runs__created_at", filter=Q(sync_runs__kind=SyncKind.FULL))
    )
    queued = 0
    for app in apps:
        if app.last_full is not None and now - app.last_full < app.full_sync_interval:
            continue
        if services.active_run(app) is not None:
            continue
        services.request_sync(app, requested_via=services.VIA_SCHEDULE)
        queued += 1
    if queued:
        logger.info("Queued %s full sync(s).", queued)
    return queued
