"""Ending a request that is still pending, without a decision: canceled by its requester,
with the user who was offboarded or the grant an extension would extend, or expired."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from access.choices import RequestStatus
from access.models import AccessRequest, Actor
from audit.services import record_event


def end_pending_request(
    request: AccessRequest,
    *,
    status: str = RequestStatus.CANCELED,
    actor: Actor = None,
    details: dict[str, Any],
    now: datetime | None = None,
) -> bool:
    """Ends ``request`` with ``status`` (canceled or expired) and records request.<status>
    with ``details``, if it is still pending. A conditional update, so of a decision and an
    ending at the same moment only one wins. Returns whether this call ended it; run it
    inside the caller's transaction."""
    now = now or timezone.now()
    ended = AccessRequest.objects.filter(pk=request.pk, status=RequestStatus.PENDING).update(
        status=status, decided_at=now, updated_at=now
    )
    if not ended:
        return False
    request.status, request.decided_at, request.updated_at = status, now, now
    record_event(f"request.{status}", actor=actor, target=request, details=details)
    return True
