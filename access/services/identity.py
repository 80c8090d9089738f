"""What Portcullis learns about a user from their identity provider: the OIDC subject that
trust-policy grants name, kept with the issuer that gave it."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from access import drivers
from access.models import Actor, User
from access.services import grants
from audit.services import record_event


def learn_subject(user: User, subject: str, *, issuer: str, actor: Actor = None) -> bool:
    """Records the user's subject at ``issuer`` when that is the issuer AWS trusts, and
    applies the grants that waited for it. Returns whether the subject was recorded.

    A subject from another issuer is never recorded: trust policies name subjects of the
    trusted issuer only, and the same string at another provider may be someone else."""
    subject = (subject or "").strip()
    trusted = drivers.subject_issuer()
    if not subject or not trusted or issuer.rstrip("/") != trusted:
        return False
    if user.oidc_subject == subject and (user.oidc_issuer or "").rstrip("/") == trusted:
        return False
    with transaction.atomic():
        before = user.oidc_subject
        User.objects.filter(pk=user.pk).update(oidc_subject=subject, oidc_issuer=trusted)
        user.oidc_subject = subject
        user.oidc_issuer = trusted
        record_event(
            "user.subject_learned",
            actor=actor,
            target=user,
            details={"issuer": trusted, "before": before, "after": subject},
        )
        grants.retry_waiting_for_subject(user)
    return True


def forget_subjects_of_other_issuers(
    issuer: str, *, actor: Actor, resource_types: Iterable[str]
) -> list[int]:
    """AWS now trusts ``issuer``: every subject another issuer gave is cleared, one event per
    user (each user's history shows it), and those users' current grants of
    ``resource_types`` (the ones whose trust statements name subjects) are applied again,
    so that they wait for the subject of the new issuer, learnt at the user's next sign-in
    through it. Returns the ids of the users whose subject was cleared."""
    issuer = (issuer or "").rstrip("/")
    cleared: list[int] = []
    with transaction.atomic():
        stale = (
            User.objects.select_for_update()
            .exclude(oidc_subject="")
            .exclude(oidc_issuer=issuer)
            .order_by("pk")
        )
        for user in stale:
            if issuer and user.oidc_issuer.rstrip("/") == issuer:
                continue  # the same issuer, spelt with a trailing slash
            User.objects.filter(pk=user.pk).update(oidc_subject="", oidc_issuer="")
            record_event(
                "user.subject_cleared",
                actor=actor,
                target=user,
                details={
                    "issuer_before": user.oidc_issuer,
                    "issuer_after": issuer,
                    "subject_before": user.oidc_subject,
                },
            )
            cleared.append(user.pk)
        if cleared:
            grants.reapply_for_users(cleared, list(resource_types))
    return cleared
