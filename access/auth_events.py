"""Audit events for logins, logouts, failed logins and single sign-on links.

Django's and allauth's signals are the only hook these flows offer (the login
itself happens deep inside allauth), so this is the one place where the audit
log is written from signal receivers. Everything else records its events in
services.
"""

from __future__ import annotations

from typing import Any

from allauth.account.authentication import get_authentication_records
from allauth.socialaccount.signals import social_account_added
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from audit.services import record_event

# allauth's names for how a session was authenticated, in our words.
_METHODS = {"password": "password", "socialaccount": "sso"}
_MAX_IDENTIFIER = 254


def normalise_identifier(value: Any) -> str:
    """The login name as typed, trimmed and lower-cased (emails are case-insensitive)."""
    return str(value or "").strip().lower()[:_MAX_IDENTIFIER]


def record_login_failed(
    identifier: str, *, method: str, reason: str, extra: dict[str, Any] | None = None
) -> None:
    """Records a refused login. Only the identifier is kept, never what was typed as password."""
    identifier = normalise_identifier(identifier)
    known = (
        get_user_model().objects.filter(email__iexact=identifier).first() if identifier else None
    )
    record_event(
        "auth.login_failed",
        actor=None,
        actor_name=f"anonymous ({identifier})" if identifier else "anonymous",
        target=known,
        target_type="" if known else "access.user",
        target_label=identifier,
        details={
            "method": method,
            "identifier": identifier,
            "reason": reason,
            "known_user": known is not None,
            **(extra or {}),
        },
    )


def _login_details(request: HttpRequest | None, user: Any) -> dict[str, Any]:
    # allauth notes each authentication step in the session just before it logs
    # the user in; the last note is the step that led to this login. A login
    # without a note (e.g. a test's force_login) is reported as a password login,
    # the only other way in.
    records = get_authentication_records(request, user) if request is not None else []
    if not records:
        return {"method": "password"}
    last = records[-1]
    method = str(last.get("method", ""))
    details: dict[str, Any] = {"method": _METHODS.get(method, method)}
    if method == "socialaccount":
        details["provider"] = last.get("provider", "")
        details["uid"] = last.get("uid", "")
    return details


@receiver(user_logged_in, dispatch_uid="portcullis_audit_logged_in")
def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    details = _login_details(request, user)
    record_event("auth.login", actor=user, target=user, details=details)
    if details.get("provider") == "sso" and details.get("uid"):
        # A portal SSO login through the issuer AWS trusts tells the user's subject, which
        # trust-policy grants waiting for it need.
        from django.conf import settings

        from access.services.identity import learn_subject

        learn_subject(user, str(details["uid"]), issuer=settings.SSO_ISSUER, actor=user)


@receiver(user_logged_out, dispatch_uid="portcullis_audit_logged_out")
def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # Logging out without a session is a no-op and not worth an event.
    if user is not None:
        record_event("auth.logout", actor=user, target=user)


@receiver(user_login_failed, dispatch_uid="portcullis_audit_login_failed")
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in ``credentials``; only the
    # identifier is read from it anyway.
    identifier = credentials.get("email") or credentials.get("username") or ""
    record_login_failed(identifier, method="password", reason="invalid_credentials")


@receiver(social_account_added, dispatch_uid="portcullis_audit_sso_connected")
def _sso_connected(
    sender: Any, request: HttpRequest | None, sociallogin: Any, **kwargs: Any
) -> None:
    user = sociallogin.user
    account = sociallogin.account
    record_event(
        "auth.sso_connected",
        actor=user,
        target=user,
        details={
            "provider": account.provider,
            "uid": account.uid,
            "email": normalise_identifier(user.email),
            # When SSO first signs into an account by an email address that was
            # never verified, allauth disables the account's password, so that
            # whoever registered that address cannot keep a way in; the event
            # says whether the account is left without a password. (The key
            # avoids the word "password" alone, which the audit log redacts.)
            "passwordless": not user.has_usable_password(),
        },
    )
