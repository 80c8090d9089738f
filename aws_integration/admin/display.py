"""How validations and sync runs look in the admin: status colours, progress, totals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils.html import format_html
from django.utils.safestring import SafeString

from audit.models import AuditEvent
from aws_integration.choices import SyncKind, SyncStatus, ValidationStatus
from aws_integration.models import SyncRun, Validation
from aws_integration.sync.services import REQUESTED_VIA

ACTIVE_SYNC_STATUSES = (SyncStatus.QUEUED, SyncStatus.RUNNING)
COUNT_KINDS = ("created", "updated", "deleted")
# Keys of Validation.details that name what is missing (shown first, as a list).
MISSING_KEYS = ("missing_actions", "missing", "actions")
# What a check probed, passed or not: on the Validation's own page, not in the summary.
HIDDEN_KEYS = ("checked_actions",)
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
STATUS_ORDER: dict[str, int] = {
    ValidationStatus.FAILED: 0,
    ValidationStatus.PASSED: 1,
    ValidationStatus.SKIPPED: 2,
}


def badge(status: str, label: str) -> SafeString:
    return format_html('<span class="portcullis-status status-{}">{}</span>', status, label)


def progress_bar(run: SyncRun) -> SafeString:
    percent = run.progress_percent
    text = f"{run.progress_done} / {run.progress_total}" if run.progress_total else f"{percent}%"
    return format_html(
        '<progress class="portcullis-progress" value="{}" max="100" title="{}">{}%</progress> {}',
        percent,
        text,
        percent,
        text,
    )


def count_totals(counts: Any) -> dict[str, int]:
    """created/updated/deleted summed over resource types, whichever way round the run
    stored them ({type: {created: n}} or {created: {type: n}} or flat)."""
    totals = dict.fromkeys(COUNT_KINDS, 0)
    if not isinstance(counts, dict):
        return totals
    for key, value in counts.items():
        if key in COUNT_KINDS:
            if isinstance(value, dict):
                totals[key] += sum(v for v in value.values() if isinstance(v, int))
            elif isinstance(value, int):
                totals[key] += value
        elif isinstance(value, dict):
            for kind in COUNT_KINDS:
                if isinstance(value.get(kind), int):
                    totals[kind] += value[kind]
    return totals


def counts_summary(run: SyncRun) -> str:
    totals = count_totals(run.counts)
    return ", ".join(f"{n} {kind}" for kind, n in totals.items())


def format_duration(value: timedelta | None) -> str:
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{value.total_seconds():.1f} s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def missing_names(validation: Validation) -> list[str]:
    details = validation.details if isinstance(validation.details, dict) else {}
    for key in MISSING_KEYS:
        value = details.get(key)
        if isinstance(value, list | tuple) and value:
            return [str(v) for v in value]
    return []


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(str(v) for v in value.values() if v not in (None, ""))
    if isinstance(value, list | tuple):
        return "; ".join(_text(v) for v in value)
    return str(value)


def other_details(validation: Validation) -> list[tuple[str, str]]:
    """The rest of a check's details as (key, text), for people."""
    details = validation.details if isinstance(validation.details, dict) else {}
    return [
        (key.replace("_", " "), _text(value))
        for key, value in details.items()
        if key not in MISSING_KEYS and key not in HIDDEN_KEYS and value not in (None, "", [], {})
    ]


def sorted_validations(validations: list[Validation]) -> list[Validation]:
    """Failures first, the most severe first among them."""
    return sorted(
        validations,
        key=lambda v: (STATUS_ORDER.get(v.status, 9), SEVERITY_ORDER.get(v.severity, 9), v.key),
    )


def requested_by_labels(runs: list[SyncRun]) -> dict[int, str]:
    """Who or what asked for each run: the person, the events queue, or what the run's
    "sync.requested" event names (the schedule, the sync command, the demo), read for
    all the runs in one query. Runs recorded before that was named say "Portcullis"."""
    unnamed = [
        str(run.pk) for run in runs if run.requested_by_id is None and run.kind != SyncKind.EVENTS
    ]
    via = (
        dict(
            AuditEvent.objects.filter(
                action="sync.requested",
                target_type=SyncRun._meta.label_lower,
                target_id__in=unnamed,
            ).values_list("target_id", "actor_name")
        )
        if unnamed
        else {}
    )
    labels = {}
    for run in runs:
        if run.requested_by is not None:
            labels[run.pk] = str(run.requested_by)
        elif run.kind == SyncKind.EVENTS:
            labels[run.pk] = "CloudTrail events"
        else:
            name = via.get(str(run.pk), "")
            labels[run.pk] = name if name in REQUESTED_VIA else "Portcullis"
    return labels
