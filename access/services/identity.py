"""What Portcullis learns about a user from their identity provider: the OIDC subject that
trust-policy grants name."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from access import drivers
from access.models import User
from access.services import grants
from audit.services import record_event


def learn_subject(user: User, subject: str, *, issuer: str, actor: Any = None) -> bool:
    """Records the user's subject at ``issuer`` when that is the issuer AWS trusts, and
    applies the grants that waited for it. Returns whether the subject was recorded.

    A subject from another issuer is never recorded: trust policies name subjects of the
    trusted issuer only, and the same string at another provider may be someone else."""
    subject = (subject or "").strip()
    trusted = drivers.subject_issuer()
    if not subject or not trusted or issuer.rstrip("/") != trusted:
        return False
    if user.oidc_subject == subject:
        return False
    with transaction.atomic():
        before = user.oidc_subject
        User.objects.filter(pk=user.pk).update(oidc_subject=subject)
        user.oidc_subject = subject
        record_event(
            "user.subject_learned",
            actor=actor,
            target=user,
            details={"issuer": trusted, "before": before, "after": subject},
        )
        grants.retry_waiting_for_subject(user)
    return True
