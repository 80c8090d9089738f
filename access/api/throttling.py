"""Rate limits of the API: per client IP for anonymous callers and for bad API tokens, per
user for everyone signed in, and a stricter one on creating API tokens (the API and the
tokens page).

The rates are settings (API_THROTTLE_* in README); a caller over the rate gets 429 with
Retry-After. Anonymous callers are counted by the address audit.middleware.client_ip
takes (TRUSTED_PROXY_COUNT), the one the audit log and the login limits use, so a made-up
X-Forwarded-For hop gets no new allowance.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from audit.middleware import client_ip

TOKEN_CREATE_SCOPE = "token_create"


class _Settings:
    """Reads the rate when asked, not once at import (DRF's default), so that a changed
    setting, such as a test's, applies; and counts by the audit log's client IP."""

    scope: str | None

    def get_rate(self) -> str | None:
        try:
            # "60/minute" or None, by scope: the stubs type the rates as numbers.
            rates: dict[str | None, str | None] = cast(Any, api_settings.DEFAULT_THROTTLE_RATES)
            return rates[self.scope]
        except KeyError as exc:
            raise ImproperlyConfigured(
                f"REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'] has no rate for {self.scope!r}."
            ) from exc

    def get_ident(self, request: Any) -> str:
        return address_key(client_ip(request) or request.META.get("REMOTE_ADDR", ""))


def address_key(address: str) -> str:
    """Who a client IP is counted as: an IPv4 address itself; for IPv6, its /64, which is
    one site's (one LAN's) and holds more addresses than anyone could count one by one."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
    return str(parsed)


class AnonThrottle(_Settings, AnonRateThrottle):
    """Anonymous callers of an endpoint open to them, by client IP. Endpoints that need a
    user refuse anonymous callers (401) before throttles are checked; bad tokens are
    counted by FailedTokenThrottle, at the same rate."""


class FailedTokenThrottle(_Settings, SimpleRateThrottle):
    """Requests with a bad API token, per client IP, at the anonymous rate.

    DRF checks throttles only after authentication, and a bad token is refused (401) in
    authentication: without this, guessing tokens would never be throttled. Once an
    address is over the rate, its bad tokens get 429 until the window passes; a valid
    token still passes, so that nobody sharing the address (an office's NAT) can lock
    everyone else's tokens out. That tells a guesser a token is valid once they hold one,
    which over 200 unknown bits of secret make nothing to learn from."""

    scope = "anon"
    # Set by SimpleRateThrottle's __init__ from the rate; duration is read only with a rate.
    num_requests: int | None
    duration: int

    def __init__(self, request: Any) -> None:
        super().__init__()
        # Not get_cache_key: that reads request.user, which is being authenticated.
        self.key = self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def _recent(self) -> list[float]:
        self.now = self.timer()
        history = self.cache.get(self.key, [])
        return [at for at in history if at > self.now - self.duration]

    def refuse_if_over(self) -> None:
        if self.num_requests is None:
            return
        self.history = self._recent()
        if len(self.history) >= self.num_requests:
            raise exceptions.Throttled(wait=self.wait())

    def failed(self) -> None:
        if self.num_requests is None:
            return
        self.history = self._recent()
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)


class UserThrottle(_Settings, UserRateThrottle):
    """Each signed-in user or token holder, whichever token they use."""


class TokenCreateThrottle(_Settings, UserRateThrottle):
    """Creating API tokens, per user: a stolen session cannot mint tokens by the hundred."""

    scope = TOKEN_CREATE_SCOPE


def throttled_page(
    request: HttpRequest, throttle: SimpleRateThrottle, what: str
) -> HttpResponse | None:
    """For a page (not the API): a 429 page with Retry-After when over the rate, else None.
    ``what`` completes "You have ... too often": e.g. "created API tokens"."""
    # A page's request and no view: the throttle reads only the request's user and address.
    if throttle.allow_request(request, None):  # type: ignore[arg-type]
        return None
    wait = max(1, math.ceil(throttle.wait() or 1))
    when = f"{math.ceil(wait / 60)} minutes" if wait > 90 else f"{wait} seconds"
    message = f"You have {what} too often. Try again in {when}."
    response = render(request, "429.html", {"message": message}, status=429)
    response["Retry-After"] = str(wait)
    return response
