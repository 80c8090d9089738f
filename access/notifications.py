"""Email notifications of the access workflow: reviewers when a stage starts, the requester
on each decision, holders before their access expires.

Mail is sent by a task once the transaction that caused it commits, so a rolled-back
change sends nothing and a slow mail server slows no page: one task for all the mail of
a transaction.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from access.humanize import humanize, time_left
from access.models import AccessRequest, Approval, Grant, User
from config import queue


def link(name: str, *args: object) -> str:
    """The absolute address of the page named ``name``."""
    return f"{settings.SITE_URL}{reverse(name, args=args)}"


def _body(template: str, context: dict[str, object]) -> str:
    return render_to_string(f"access/email/{template}.txt", context).rstrip("\n")


class _Batch:
    """The mail of one transaction, queued as one task once it commits."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str, str]] = []
        self.queued = False

    def __call__(self) -> None:
        self.queued = True
        queue.enqueue("access.tasks.deliver_emails", self.messages, keep_success=False)


def _open_batch() -> _Batch | None:
    """The batch not yet queued that commits or rolls back with mail sent now: one
    registered under the same savepoints of this transaction (Django drops a commit
    callback with any savepoint it was registered under that rolls back, so callbacks
    registered under the same ones share their fate)."""
    connection = transaction.get_connection()
    here = set(connection.savepoint_ids)
    for sids, callback, _robust in connection.run_on_commit:
        if isinstance(callback, _Batch) and not callback.queued and sids == here:
            return callback
    return None


def _send(recipients: list[str], subject: str, body: str) -> None:
    recipients = sorted({r for r in recipients if r})
    if not recipients:
        return
    message = (recipients, subject, body)
    if not transaction.get_connection().in_atomic_block:
        queue.enqueue("access.tasks.deliver_emails", [message], keep_success=False)
        return
    batch = _open_batch()
    if batch is None:
        batch = _Batch()
        transaction.on_commit(batch)
    batch.messages.append(message)


def _what(request: AccessRequest) -> str:
    return f"{request.resource.name} ({request.access_level.name})"


def stage_started(
    request: AccessRequest, *, reviewers: list[int], emails: dict[int, str] | None = None
) -> None:
    """The stage's reviewers (``reviewers``, their ids), but the requester, are asked to
    decide. ``emails``: active users' addresses the caller read already, by id."""
    wanted = [pk for pk in reviewers if pk not in (request.user_id, request.requested_by_id)]
    if emails is not None and all(pk in emails for pk in wanted):
        addresses = [emails[pk] for pk in wanted]
    else:
        addresses = list(
            User.objects.filter(pk__in=wanted, is_active=True).values_list("email", flat=True)
        )
    who = request.user.email
    if request.requested_by_id != request.user_id:
        who += f" (asked by {request.requested_by.email})"
    _send(
        addresses,
        f"[Portcullis] Approve access to {_what(request)} for {request.user.email}?",
        _body(
            "stage_started",
            {
                "request": request,
                "who": who,
                "what": _what(request),
                "duration": humanize(request.duration),
                "stages": len(request.stages),
                "request_url": link("request-detail", request.pk),
                "approvals_url": link("approvals"),
            },
        ),
    )


def decided(request: AccessRequest, *, last: Approval | None = None) -> None:
    """The requester is told the outcome; ``last``, the decision just made if the caller
    has it, spares reading it back."""
    status = request.get_status_display().lower()
    recipients = [request.user.email, request.requested_by.email]
    if last is None:
        last = request.approvals.order_by("-created_at").select_related("reviewer").first()
    # Who decided, unless nobody did (expired, canceled) or the rule did.
    by = last if request.status in ("approved", "denied") and not request.auto_approved else None
    _send(
        recipients,
        f"[Portcullis] Access to {_what(request)} {status}",
        _body(
            "decided",
            {
                "what": _what(request),
                "status": status,
                "decided_by": by.reviewer.email if by is not None else "",
                "comment": by.comment if by is not None else "",
                "approved": request.status == "approved",
                "access_url": link("my-access"),
                "request_url": link("request-detail", request.pk),
            },
        ),
    )


def expiry_warning(grant: Grant, *, within: timedelta) -> None:
    assert grant.expires_at is not None  # only grants that end are warned
    expires = timezone.localtime(grant.expires_at).strftime("%Y-%m-%d %H:%M %Z")
    _send(
        [grant.user.email],
        f"[Portcullis] Your access to {grant.resource.name} ends in "
        f"{time_left(grant.expires_at - timezone.now())}",
        _body(
            "expiry_warning",
            {"grant": grant, "expires": expires, "extend_url": link("grant-extend", grant.pk)},
        ),
    )
