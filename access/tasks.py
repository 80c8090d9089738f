"""django-q2 tasks of the access workflow: they take ids, re-read rows and are idempotent.

The grant engine is not a task: it is a loop the task cluster runs (access.engine)."""

from __future__ import annotations

from django.core.mail import EmailMessage, get_connection, send_mail
from django.utils import timezone

from access import engine
from access.services import grants


def sweep() -> dict[str, int]:
    """The scheduled safety net (every few minutes), in case the engine's own sweep did
    not run: expired grants, work left with nothing planned, pending requests past their
    deadline, expiry warnings. It plans; the engine reconciles."""
    now = timezone.now()
    return {"expired": grants.expire_due_grants(now), **engine.sweep(now)}


def deliver_email(recipients: list[str], subject: str, body: str) -> int:
    """Sends one notification; django-q2 retries the task if the mail server fails."""
    return send_mail(subject, body, None, recipients, fail_silently=False)


def deliver_emails(messages: list[tuple[list[str], str, str]]) -> int:
    """Sends the notifications of one transaction, (recipients, subject, body) each, over
    one connection to the mail server. django-q2 retries the task if the server fails,
    and a retry sends the batch again from its first message."""
    emails = [
        EmailMessage(subject, body, None, recipients) for recipients, subject, body in messages
    ]
    return get_connection(fail_silently=False).send_messages(emails) or 0
