"""allauth's account pages, with two changes: each change and its audit event (written by
access.auth_events from allauth's signals) commit together, and an email address becomes
the account's address only once it is verified.

The pages are allauth's own; these are mounted at the same paths, ahead of allauth's URLs.
"""

from __future__ import annotations

from typing import Any

from allauth.account import views as allauth_views
from allauth.account.models import EmailAddress
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect


def _mark_current_address_primary(user: Any) -> None:
    """allauth records the address of a user made in the admin as not primary; confirming
    another address would then make that one the account's silently, with no
    email_changed signal. Marked primary, the current address changes only by an explicit,
    recorded choice of a verified one."""
    if not user.email or EmailAddress.objects.filter(user=user, primary=True).exists():
        return
    # The address exactly as allauth's own sync records it, so that it adds no second row.
    address, _ = EmailAddress.objects.get_or_create(user=user, email=user.email)
    EmailAddress.objects.filter(pk=address.pk).update(primary=True)


class EmailView(allauth_views.EmailView):
    """Adding an address mails a verification link to it, whatever
    ACCOUNT_EMAIL_VERIFICATION says; only once that link is opened can it be made the
    account's address. An address nobody has verified never becomes the account's, since
    the account's address decides whose mail and whose Identity Center user it is.

    (allauth's ACCOUNT_CHANGE_EMAIL would do the same in one step, but it discards the
    current address when that one is itself unverified, as every address is when
    verification is off.)"""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            _mark_current_address_primary(request.user)
        return super().dispatch(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with transaction.atomic():
            return super().post(request, *args, **kwargs)

    def _action_primary(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        address: EmailAddress | None = self._get_email_address(request)
        if address is not None and not address.verified:
            messages.error(
                request,
                f"{address.email} is not verified yet, so it cannot become your address. "
                "Open the link mailed to it, then make it your primary address.",
            )
            return HttpResponseRedirect(self.get_success_url())
        return super()._action_primary(request, *args, **kwargs)


email = EmailView.as_view()
# Django's and allauth's views change the password or the address and then send the signal
# that records the event; one transaction holds both.
confirm_email = transaction.atomic(allauth_views.confirm_email)
password_change = transaction.atomic(allauth_views.password_change)
password_set = transaction.atomic(allauth_views.password_set)
password_reset_from_key = transaction.atomic(allauth_views.password_reset_from_key)
