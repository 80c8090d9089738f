"""allauth adapters: sign-up is closed unless configured open; SSO creates users just in time.

Settings are read when each method runs, not at import, so a changed setting
(and a test's override) takes effect without a restart.
"""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.account.utils import user_email
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialAccount, SocialLogin
from allauth.socialaccount.providers.base import AuthProcess
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import render

from access.auth_events import normalise_identifier, record_login_failed
from audit.middleware import client_ip
from audit.services import record_event

logger = logging.getLogger(__name__)


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request: HttpRequest) -> str:
        """The address allauth's rate limits count by: the audit log's (TRUSTED_PROXY_COUNT)."""
        ip = client_ip(request)
        if not ip:
            raise PermissionDenied("Unable to determine client IP address")
        return ip

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(settings.OPEN_SIGNUP)

    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        """Saves a user who signed up (only possible with OPEN_SIGNUP) and records it."""
        if not commit:
            return super().save_user(request, user, form, commit=False)
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=True)
            record_event(
                "user.created",
                actor=user,
                target=user,
                details={"source": "signup", "email": user.email},
            )
        return user

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        """Sends allauth's account mail (a verification link, a password reset) during the
        request, as allauth does, but a mail server that fails or stays silent past
        EMAIL_TIMEOUT costs the page at most that long, never an error page: the failure
        is logged, and the person can ask for the mail again.

        Not queued as a task: the task's arguments, with the link in them, would be kept
        in the task queue's tables and shown in the admin."""
        try:
            super().send_mail(template_prefix, email, context)
        except (OSError, smtplib.SMTPException) as exc:
            logger.error(
                "Could not send the %s mail to %s: %s: %s",
                template_prefix.rsplit("/", 1)[-1],
                email,
                type(exc).__name__,
                exc,
            )

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        # allauth refuses an attempt over the failed-login limit before trying the
        # password, so Django's user_login_failed signal never fires for it: it
        # is recorded here, so that a brute-force attempt shows in the audit log.
        # These events are bounded by allauth's per-IP "login" rate limit.
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            record_login_failed(
                credentials.get("email") or credentials.get("username") or "",
                method="password",
                reason="rate_limited",
            )
            raise


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        # SSO users are created on first login (just in time) when SSO_CREATE_USERS
        # is on, whatever OPEN_SIGNUP says: the identity provider vouches for them.
        return bool(settings.SSO_CREATE_USERS)

    def populate_user(self, request: HttpRequest, sociallogin: SocialLogin, data: dict) -> Any:
        user = super().populate_user(request, sociallogin, data)
        if user.email:
            user.email = normalise_identifier(user.email)
        return user

    def authenticate_by_email(self, sociallogin: SocialLogin) -> tuple[Any, str] | None:
        """The account a first SSO login signs in to by the address the provider vouches
        for. allauth also matches an address nobody verified in Portcullis (any signed-in
        person may add one at /accounts/email/, or sign up with it) and only disables the
        account's password. Such a match is taken only when the address is the account's
        own and the account has no other way in: no other address (a password reset could
        be sent there) and no other single sign-on identity. Otherwise pre_social_login
        refuses the login."""
        found = super().authenticate_by_email(sociallogin)
        if found is None:
            return None
        user, email = found
        if EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists():
            return found
        sole_address = (user.email or "").lower() == email.lower() and not (
            EmailAddress.objects.filter(user=user).exclude(email__iexact=email).exists()
        )
        if sole_address and not SocialAccount.objects.filter(user=user).exists():
            return found
        return None

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        """Refuses, with a page saying why, an SSO login that would not lead to exactly
        one legitimate account. Runs after allauth has looked the identity up by its
        subject and, when the provider vouches for the address, by email."""
        super().pre_social_login(request, sociallogin)
        if sociallogin.is_existing or sociallogin.state.get("process") == AuthProcess.CONNECT:
            return
        email = normalise_identifier(user_email(sociallogin.user))
        if not email:
            # Without an address allauth would ask the person to type one, and an
            # address typed here would be one nobody has verified.
            self._refuse(
                request,
                sociallogin,
                email,
                reason="no_email",
                message=(
                    "Your identity provider did not send an email address, and Portcullis "
                    "needs one to find or create your account. Ask the administrator of "
                    "your identity provider to release the email claim to Portcullis."
                ),
            )
        # Any account that has this address, as its own or as one only proposed.
        claimed = (
            get_user_model().objects.filter(email__iexact=email).exists()
            or EmailAddress.objects.filter(email__iexact=email).exists()
        )
        if claimed and any(a.verified for a in sociallogin.email_addresses):
            # The provider vouches for the address, but the account that claims it never
            # verified it and has another way in (authenticate_by_email).
            self._refuse(
                request,
                sociallogin,
                email,
                reason="unverified_account_email",
                message=(
                    f"A Portcullis account claims {email}, but that address was never "
                    "verified in Portcullis, so single sign-on cannot be linked to it. Ask "
                    "a Portcullis administrator."
                ),
            )
        if claimed:
            # The account exists, but the lookup by email did not match it, because
            # the provider did not mark the address as verified.
            self._refuse(
                request,
                sociallogin,
                email,
                reason="unverified_email",
                message=(
                    f"A Portcullis account for {email} exists, but your identity provider "
                    "did not confirm that this email address is verified, so single sign-on "
                    "cannot be linked to it. Sign in with your password, or ask a Portcullis "
                    "administrator."
                ),
            )
        if not self.is_open_for_signup(request, sociallogin):
            self._refuse(
                request,
                sociallogin,
                email,
                reason="no_account",
                message=(
                    f"There is no Portcullis account for {email}, and accounts are not "
                    "created at single sign-on here. Ask a Portcullis administrator to "
                    "create your account."
                ),
            )

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> Any:
        """Creates the user of a first SSO login (just in time) and records it."""
        with transaction.atomic():
            user = super().save_user(request, sociallogin, form)
            record_event(
                "user.created",
                actor=user,
                target=user,
                details={
                    "source": "sso",
                    "email": user.email,
                    "provider": sociallogin.account.provider,
                    "uid": sociallogin.account.uid,
                },
            )
        return user

    def _refuse(
        self,
        request: HttpRequest,
        sociallogin: SocialLogin,
        email: str,
        *,
        reason: str,
        message: str,
    ) -> None:
        record_login_failed(
            email,
            method="sso",
            reason=reason,
            extra={"provider": sociallogin.account.provider, "uid": sociallogin.account.uid},
        )
        response = render(request, "account/sso_refused.html", {"message": message}, status=403)
        raise ImmediateHttpResponse(response)
