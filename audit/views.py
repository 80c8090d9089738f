"""The audit log pages: a filtered, paginated list and one event with its chain links.

Pagination is by event id (keyset), never by page number: the log grows to
millions of rows and a page costs the same whether it is the first or the
thousandth, with no COUNT(*) over the table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET

from audit.filters import AuditEventFilter, recent_values
from audit.models import GENESIS_HASH, AuditEvent, UnknownChainKey
from config.parsing import positive_int

PAGE_SIZE = 50


def can_read_audit_log(user: Any) -> bool:
    """Asks the project's rule (settings.AUDIT_READ_RULE): audit imports no other app."""
    return bool(import_string(settings.AUDIT_READ_RULE)(user))


def _require_reader(request: HttpRequest) -> None:
    if not can_read_audit_log(request.user):
        raise PermissionDenied("The audit log is open to auditors and admins only.")


def pretty_details(details: Any) -> str:
    return json.dumps(details, indent=2, sort_keys=True, ensure_ascii=False)


def _with_pretty_details(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    rows = list(events)
    for event in rows:
        event.details_pretty = pretty_details(event.details)  # type: ignore[attr-defined]
    return rows


def _position(request: HttpRequest, name: str) -> tuple[int | None, str | None]:
    """Reads a keyset position (an event id) from the query string."""
    raw = request.GET.get(name, "").strip()
    if not raw:
        return None, None
    if (position := positive_int(raw)) is not None:
        return position, None
    return None, f"'{name}' must be an event number, not {raw[:40]!r}; go back to the first page."


@login_required
@require_GET
def event_list(request: HttpRequest) -> HttpResponse:
    _require_reader(request)
    filterset = AuditEventFilter(
        request.GET or None, queryset=AuditEvent.objects.select_related("actor")
    )
    errors: list[str] = []
    if filterset.is_bound and not filterset.is_valid():
        for field, messages in filterset.errors.items():
            label = filterset.form.fields[field].label if field in filterset.form.fields else ""
            for message in messages:
                # Date fields say which box is wrong already; the others get their label.
                errors.append(
                    message if not label or str(label) in message else f"{label}: {message}"
                )
    before, before_error = _position(request, "before")
    after, after_error = _position(request, "after")
    errors += [e for e in (before_error, after_error) if e]

    events: list[AuditEvent] = []
    newer_after = older_before = None
    if not errors:
        queryset = filterset.qs
        if after is not None:
            # Newer page: walk up from the position, then show newest first.
            rows = list(queryset.filter(pk__gt=after).order_by("id")[: PAGE_SIZE + 1])
            has_newer = len(rows) > PAGE_SIZE
            events = list(reversed(rows[:PAGE_SIZE]))
            has_older = True
        else:
            if before is not None:
                queryset = queryset.filter(pk__lt=before)
            rows = list(queryset.order_by("-id")[: PAGE_SIZE + 1])
            has_older = len(rows) > PAGE_SIZE
            events = rows[:PAGE_SIZE]
            has_newer = before is not None
        if events:
            newer_after = events[0].pk if has_newer else None
            older_before = events[-1].pk if has_older else None

    context = {
        "filter": filterset,
        "form": filterset.form,
        "events": _with_pretty_details(events),
        "errors": errors,
        "newer_after": newer_after,
        "older_before": older_before,
        "paged": before is not None or after is not None,
        "action_suggestions": recent_values("action"),
        "target_type_suggestions": recent_values("target_type"),
        "page_size": PAGE_SIZE,
        "time_zone": timezone.get_current_timezone_name(),
    }
    return render(request, "audit/event_list.html", context, status=400 if errors else 200)


@login_required
@require_GET
def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    _require_reader(request)
    event = get_object_or_404(AuditEvent.objects.select_related("actor"), pk=pk)
    previous = (
        AuditEvent.objects.filter(pk__lt=event.pk).order_by("-id").values("pk", "hash").first()
    )
    following = (
        AuditEvent.objects.filter(pk__gt=event.pk).order_by("id").values("pk", "prev_hash").first()
    )
    expected_prev = previous["hash"] if previous else GENESIS_HASH
    try:
        hash_matches: bool | None = event.compute_hash() == event.hash
    except UnknownChainKey:
        hash_matches = None  # keyed with a key this server does not hold
    context = {
        "event": event,
        "details_pretty": pretty_details(event.details),
        "previous": previous,
        "following": following,
        "hash_matches_contents": hash_matches,
        "prev_hash_matches": event.prev_hash == expected_prev,
        "is_first": previous is None,
        "following_links_here": following is None or following["prev_hash"] == event.hash,
    }
    return render(request, "audit/event_detail.html", context)
