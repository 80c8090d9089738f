"""Email notifications of the access workflow: reviewers when a stage starts, the requester
on each decision, holders before their access expires.

Mail is sent by a task once the transaction that caused it commits, so a rolled-back
change sends nothing and a slow mail server slows no page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from access.humanize import humanize, time_left
from config import queue

if TYPE_CHECKING:
    from access.models import AccessRequest, Grant


def link(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def _send(recipients: list[str], subject: str, body: str) -> None:
    recipients = sorted({r for r in recipients if r})
    if not recipients:
        return
    transaction.on_commit(
        lambda: queue.enqueue("access.tasks.deliver_email", recipients, subject, body)
    )


def _what(request: AccessRequest) -> str:
    return f"{request.resource.name} ({request.access_level.name})"


def stage_started(request: AccessRequest) -> None:
    from access.models import User

    reviewers = list(
        User.objects.filter(pk__in=request.stage_reviewers or [], is_active=True)
        .exclude(pk__in=[request.user_id, request.requested_by_id])
        .values_list("email", flat=True)
    )
    stages = len(request.stages)
    who = request.user.email
    if request.requested_by_id != request.user_id:
        who += f" (asked by {request.requested_by.email})"
    _send(
        reviewers,
        f"[Portcullis] Approve access to {_what(request)} for {request.user.email}?",
        "\n".join(
            [
                f"{who} asks for access to {_what(request)}.",
                f"Duration: {humanize(request.duration)}",
                f"Reason: {request.reason or '(none given)'}",
                *([f"Ticket: {request.ticket}"] if request.ticket else []),
                f"Stage {request.current_stage} of {stages}.",
                "",
                f"Approve or deny: {link(f'/requests/{request.pk}/')}",
                f"Everything awaiting you: {link('/approvals/')}",
            ]
        ),
    )


def decided(request: AccessRequest) -> None:
    status = request.get_status_display().lower()
    recipients = [request.user.email, request.requested_by.email]
    last = request.approvals.order_by("-created_at").select_related("reviewer").first()
    lines = [f"Your request for {_what(request)} was {status}."]
    if last is not None and request.status in ("approved", "denied") and not request.auto_approved:
        lines.append(f"Decided by {last.reviewer.email}: {last.comment or '(no comment)'}")
    if request.status == "approved":
        lines.append(f"Your access: {link('/access/')}")
    lines.append(f"The request: {link(f'/requests/{request.pk}/')}")
    _send(recipients, f"[Portcullis] Access to {_what(request)} {status}", "\n".join(lines))


def expiry_warning(grant: Grant, *, within: timedelta) -> None:
    expires = timezone.localtime(grant.expires_at).strftime("%Y-%m-%d %H:%M %Z")
    _send(
        [grant.user.email],
        f"[Portcullis] Your access to {grant.resource.name} ends in "
        f"{time_left(grant.expires_at - timezone.now())}",
        "\n".join(
            [
                f"Your access to {grant.resource.name} ({grant.access_level.name}) ends at "
                f"{expires}.",
                f"Extend it: {link(f'/access/{grant.pk}/extend/')}",
            ]
        ),
    )
