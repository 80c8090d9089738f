"""Personal API tokens: creating and revoking them, each recorded in the audit log.

Only the SHA-256 digest of a token is stored. The raw token is returned once,
by ``create_api_token``, for the caller to show; it never reaches the database,
the audit log or the logs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from access import permissions
from access.models import Actor, ApiToken, User
from audit.services import record_event

# "pcl_" and eight random characters: enough to tell tokens apart in a list and
# in the audit log, while leaving over 200 bits of the secret unknown.
PREFIX_LENGTH = 12
NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length or 100
READ_ONLY_REFUSAL = (
    "This API token is read-only: it may only read (GET, HEAD, OPTIONS). Create a token "
    "without the read-only scope to change things."
)


def max_expiry_days() -> int:
    """API_TOKEN_MAX_DAYS: the longest a token lasts."""
    return int(settings.API_TOKEN_MAX_DAYS)


def token_status(token: ApiToken) -> str:
    """``active``, ``expired`` or ``revoked``, as shown on the tokens page and in the API."""
    if token.revoked_at is not None:
        return "revoked"
    if token.ends_at is not None and token.ends_at <= timezone.now():
        return "expired"
    return "active"


def expiry_in_days(days: int | None) -> datetime:
    """The expiry for a token that lasts ``days`` days from now; None: the longest allowed
    (API_TOKEN_MAX_DAYS). Every token expires."""
    longest = max_expiry_days()
    if days is None:
        days = longest
    if not 1 <= days <= longest:
        raise ValidationError(
            {"expires_in_days": f"A token lasts from 1 to {longest} days; {days} is out of range."}
        )
    return timezone.now() + timedelta(days=days)


def create_api_token(
    user: User, name: str, expires_at: datetime | None = None, *, read_only: bool = False
) -> tuple[ApiToken, str]:
    """Creates a token for ``user`` and returns it with the raw secret, which is not kept.
    ``expires_at`` None: the longest lifetime allowed; a later one is refused.
    ``read_only``: the token is refused on anything but reading."""
    if not permissions.can_use_api(user):
        raise PermissionDenied("Only active users can have API tokens.")
    if expires_at is None:
        expires_at = timezone.now() + timedelta(days=max_expiry_days())
    raw = ApiToken.generate()
    token = ApiToken(
        user=user,
        name=name,
        prefix=raw[:PREFIX_LENGTH],
        digest=ApiToken.hash_token(raw),
        expires_at=expires_at,
        read_only=read_only,
    )
    token.clean()
    with transaction.atomic():
        token.save(force_insert=True)
        record_event(
            "api_token.created",
            actor=user,
            target=token,
            details={
                "name": token.name,
                "prefix": token.prefix,
                "user_id": user.pk,
                "expires_at": expires_at.isoformat(),
                "read_only": read_only,
            },
        )
    return token, raw


def revoke_api_token(token: ApiToken, actor: Actor) -> ApiToken:
    """Revokes ``token`` at once: the next request that uses it is refused.

    Revoking a token that is already revoked changes nothing and records nothing.
    ``actor`` None means the system (for example a task deactivating a user).
    """
    if actor is not None and not permissions.can_revoke_api_token(actor, token):
        raise PermissionDenied("You can revoke only your own API tokens.")
    with transaction.atomic():
        if not _revoke(token, actor=actor, now=timezone.now()):
            token.refresh_from_db(fields=["revoked_at"])
    return token


def _revoke(token: ApiToken, *, actor: Actor, now: datetime, **details: Any) -> bool:
    """Revokes ``token`` unless it already is, with its api_token.revoked event (plus
    ``details``). A conditional update: two concurrent revokes record one event, not two.
    Returns whether this call revoked it."""
    if not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
        return False
    token.revoked_at = now
    record_event(
        "api_token.revoked",
        actor=actor,
        target=token,
        details={"name": token.name, "prefix": token.prefix, "user_id": token.user_id, **details},
    )
    return True


def revoke_user_tokens(user: User, *, actor: Actor, reason: str) -> int:
    """Revokes every token of ``user`` that is not revoked yet, each with its event naming
    ``reason``: a token must not outlive the trust its user had when it was made (they were
    deactivated, or their password was changed or reset, perhaps by someone who took it).
    Returns how many were revoked."""
    now = timezone.now()
    revoked = 0
    with transaction.atomic():
        for token in ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("pk"):
            revoked += _revoke(token, actor=actor, now=now, reason=reason)
    return revoked
