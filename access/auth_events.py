"""Audit events for logins, logouts and failed logins.

Django's auth signals are the only hook these flows offer, so this is the
one place where the audit log is written from signal receivers.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.services import record_event


@receiver(user_logged_in)
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    method = "password"
    if request is not None and getattr(request, "resolver_match", None) and (
        "socialaccount" in (request.resolver_match.view_name or "")
        or "openid_connect" in request.path
    ):
        method = "sso"
    if request is not None and "/oidc/" in getattr(request, "path", ""):
        method = "sso"
    record_event("auth.login", actor=user, target=user, details={"method": method})


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record_event("auth.logout", actor=user, target=user)


@receiver(user_login_failed)
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    identifier = str(credentials.get("email") or credentials.get("username") or "")[:254]
    known = (
        get_user_model().objects.filter(email__iexact=identifier).first() if identifier else None
    )
    record_event(
        "auth.login_failed",
        actor=None,
        actor_name=f"anonymous ({identifier})" if identifier else "anonymous",
        target=known,
        target_type="access.user" if known is None else "",
        target_label=identifier,
        details={"identifier": identifier, "known_user": known is not None},
    )
