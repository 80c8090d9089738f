"""Asking for a sync: the one entry point for the admin's "Sync now", the schedule and
the shell command."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.services import PendingEvent, record_event, record_events
from aws_integration import validators
from aws_integration.choices import SyncKind, SyncStatus
from aws_integration.models import AwsApp, SyncIssue, SyncRun
from config import queue

RUN_SYNC_TASK = "aws_integration.sync.tasks.run_sync"
# Rows resolved per UPDATE: well within every database's limit of parameters.
RESOLVE_CHUNK = 500
# What asked for a sync when no person did (the "sync.requested" event's actor name).
VIA_SCHEDULE = "schedule"
VIA_COMMAND = "manage.py sync_aws"
VIA_DEMO = "the demo's start-up"
REQUESTED_VIA = (VIA_SCHEDULE, VIA_COMMAND, VIA_DEMO)


def stale_after() -> timedelta:
    """A run still "running" this long after it started lost its worker (twice the task
    timeout, after which django-q2 has given up on it anyway)."""
    timeout = settings.Q_CLUSTER["timeout"]
    return timedelta(seconds=2 * timeout)


def expire_stale_runs(app: AwsApp) -> int:
    """Marks runs whose worker died as failed, so they neither block new runs nor show a
    progress bar for ever."""
    now = timezone.now()
    stale = list(
        SyncRun.objects.filter(
            app=app, status=SyncStatus.RUNNING, started_at__lt=now - stale_after()
        ).select_related("app")
    )
    for run in stale:
        with transaction.atomic():
            updated = SyncRun.objects.filter(pk=run.pk, status=SyncStatus.RUNNING).update(
                status=SyncStatus.FAILED,
                finished_at=now,
                message="The worker running this sync stopped before it finished.",
            )
            if updated:
                assert run.started_at is not None  # filtered on above
                record_event(
                    "sync.abandoned",
                    target=run,
                    details={"app": app.name, "started_at": run.started_at.isoformat()},
                )
    return len(stale)


def record_finished(run: SyncRun, **details: Any) -> None:
    """Saves the end of a run (status, finish time, counts, message, progress) and its
    ``sync.completed`` event in one transaction; ``details`` are what this kind of run adds
    to the event."""
    with transaction.atomic():
        run.save(
            update_fields=[
                "status",
                "finished_at",
                "counts",
                "message",
                "progress_done",
                "progress_total",
            ]
        )
        record_event(
            "sync.completed",
            actor=None,
            target=run,
            details={
                "app": run.app.name,
                "kind": run.kind,
                "status": run.status,
                "counts": run.counts,
                "message": run.message,
                **details,
            },
        )


def active_run(app: AwsApp, account_id: str = "") -> SyncRun | None:
    return (
        SyncRun.objects.filter(
            app=app,
            account_id=account_id,
            status__in=[SyncStatus.QUEUED, SyncStatus.RUNNING],
        )
        .order_by("-created_at", "-id")
        .first()
    )


def request_sync(
    app: AwsApp,
    *,
    actor: Any = None,
    account_id: str = "",
    enqueue: bool = True,
    requested_via: str = "",
) -> SyncRun:
    """A queued sync of the app (or of one of its accounts), run by the task
    ``aws_integration.sync.tasks.run_sync`` once this transaction commits.

    Without a person as ``actor``, ``requested_via`` says what asked for it (one of
    ``REQUESTED_VIA``): the audit event's actor name, which the admin shows as "requested
    by".

    When the same sync is already queued or running, that run is returned rather than a
    second one queued behind it. ``enqueue=False`` leaves the run for the caller to run
    inline (``manage.py sync_aws``)."""
    if account_id:
        validators.validate_account_id(account_id)
    expire_stale_runs(app)
    with transaction.atomic():
        existing = active_run(app, account_id)
        if existing is not None:
            return existing
        run = SyncRun.objects.create(
            app=app,
            kind=SyncKind.ACCOUNT if account_id else SyncKind.FULL,
            account_id=account_id,
            requested_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        record_event(
            "sync.requested",
            actor=actor,
            actor_name="" if run.requested_by else requested_via,
            target=run,
            details={"app": app.name, "kind": run.kind, "account_id": account_id},
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id: int) -> None:
    queue.enqueue(RUN_SYNC_TASK, run_id, task_name=f"sync-run-{run_id}", group="aws-sync")


def resolve_issues(issues: QuerySet[SyncIssue], *, actor: Any = None, reason: str) -> int:
    """Marks the open ones among ``issues`` resolved now, each with its
    ``sync.issue_resolved`` event, in one transaction; returns how many it resolved.

    ``actor`` is the admin who resolved them, or None for the system (the poller closing
    an issue that is over). The events name the issue by scope and code only: an issue's
    message can quote the start of a queue message, which auditors must not read."""
    now = timezone.now()
    with transaction.atomic():
        # Locked, so that two resolvers at once resolve (and audit) each issue once.
        open_issues = list(
            SyncIssue.objects.filter(pk__in=issues.values("pk"), resolved_at__isnull=True)
            .select_for_update(of=("self",))
            .select_related("app")
            .order_by("pk")
        )
        if not open_issues:
            return 0
        for start in range(0, len(open_issues), RESOLVE_CHUNK):
            chunk = open_issues[start : start + RESOLVE_CHUNK]
            SyncIssue.objects.filter(pk__in=[i.pk for i in chunk]).update(resolved_at=now)
        record_events(
            [
                PendingEvent(
                    "sync.issue_resolved",
                    target_type=SyncIssue._meta.label_lower,
                    target_id=issue.pk,
                    target_label=f"{issue.scope}: {issue.code}",
                    details={
                        "app": issue.app.name,
                        "scope": issue.scope,
                        "code": issue.code,
                        "occurrences": issue.occurrences,
                        "first_seen_at": issue.first_seen_at.isoformat(),
                        "last_seen_at": issue.last_seen_at.isoformat(),
                        "reason": reason,
                    },
                )
                for issue in open_issues
            ],
            actor=actor,
        )
    return len(open_issues)
