"""Audit events for logins, logouts, failed logins, single sign-on links, and people's own
password and email changes.

Django's and allauth's signals are the only hook these flows offer (the login
itself happens deep inside allauth), so this is the one place where the audit
log is written from signal receivers. Everything else records its events in
services.
"""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.account.authentication import get_authentication_records
from allauth.account.models import EmailAddress
from allauth.socialaccount.signals import social_account_added
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from access import tokens
from access.services.identity import learn_subject
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
    matched_by = getattr(sociallogin, "_did_authenticate_by_email", None)
    if matched_by and not EmailAddress.objects.filter(
        user=user, email__iexact=matched_by, verified=True
    ):
        # Tokens made with that password are as suspect as the password itself.
        tokens.revoke_user_tokens(
            user,
            actor=user,
            reason="Single sign-on signed in to the account by an address it never verified.",
        )


# Passwords and email addresses ------------------------------------------------------------
# The views that send these signals run in one transaction (access/views/account.py), so
# each change and its event commit together. Keys avoid the word "password", which the
# audit log redacts.
PASSWORD_EVENTS = {
    "changed": "user.password_changed",
    "set": "user.password_set",
    "reset": "user.password_reset",
}


def record_password_change(user: Any, how: str, *, actor: Any) -> None:
    """A password was changed, set or reset: recorded, and the user's API tokens revoked,
    since whoever had the old password may have made them."""
    record_event(
        PASSWORD_EVENTS[how],
        actor=actor,
        target=user,
        details={"email": user.email, "how": how},
    )
    tokens.revoke_user_tokens(user, actor=actor, reason=f"The user's password was {how}.")


@receiver(account_signals.password_changed, dispatch_uid="portcullis_audit_password_changed")
def _password_changed(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record_password_change(user, "changed", actor=user)


@receiver(account_signals.password_set, dispatch_uid="portcullis_audit_password_set")
def _password_set(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record_password_change(user, "set", actor=user)


@receiver(account_signals.password_reset, dispatch_uid="portcullis_audit_password_reset")
def _password_reset(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # Whoever opened the emailed link; they are not signed in yet.
    record_password_change(user, "reset", actor=user)


def _email_event(action: str, user: Any, address: Any, **details: Any) -> None:
    record_event(
        f"user.email_{action}",
        actor=user,
        target=user,
        details={
            "email": normalise_identifier(address.email),
            "verified": bool(address.verified),
            **details,
        },
    )


@receiver(account_signals.email_added, dispatch_uid="portcullis_audit_email_added")
def _email_added(
    sender: Any, request: HttpRequest | None, user: Any, email_address: Any, **kwargs: Any
) -> None:
    _email_event("added", user, email_address)


@receiver(account_signals.email_removed, dispatch_uid="portcullis_audit_email_removed")
def _email_removed(
    sender: Any, request: HttpRequest | None, user: Any, email_address: Any, **kwargs: Any
) -> None:
    _email_event("removed", user, email_address)


@receiver(account_signals.email_confirmed, dispatch_uid="portcullis_audit_email_confirmed")
def _email_confirmed(
    sender: Any, request: HttpRequest | None, email_address: Any, **kwargs: Any
) -> None:
    _email_event("confirmed", email_address.user, email_address)


@receiver(account_signals.email_changed, dispatch_uid="portcullis_audit_email_changed")
def _email_changed(
    sender: Any,
    request: HttpRequest | None,
    user: Any,
    from_email_address: Any,
    to_email_address: Any,
    **kwargs: Any,
) -> None:
    before = normalise_identifier(from_email_address.email) if from_email_address else ""
    record_event(
        "user.email_changed",
        actor=user,
        target=user,
        details={
            "before": before,
            "after": normalise_identifier(to_email_address.email),
            "verified": bool(to_email_address.verified),
        },
    )
