"""The client IP recorded in the audit log and counted by the login rate limits: the hop
the trusted proxies added to X-Forwarded-For, never one the client wrote itself."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import RequestFactory
from django.urls import reverse

from audit.middleware import client_ip
from audit.models import AuditEvent
from tests.fixtures import PASSWORD

LOGIN_URL = reverse("account_login")
PROXY = "10.0.0.1"  # the load balancer, as the app sees it


@pytest.fixture(autouse=True)
def _empty_cache():
    # allauth keeps its rate-limit counters in the cache.
    cache.clear()
    yield
    cache.clear()


@pytest.mark.parametrize(
    "proxies, remote, forwarded, expected",
    [
        # No proxy: the header is the client's own words, whatever it says.
        (0, "198.51.100.4", "6.6.6.6", "198.51.100.4"),
        # One proxy appends the address it saw; what the client sent stays on the left.
        (1, PROXY, "203.0.113.7", "203.0.113.7"),
        (1, PROXY, "6.6.6.6, 203.0.113.7", "203.0.113.7"),
        (1, PROXY, "6.6.6.6,203.0.113.7", "203.0.113.7"),
        # Two proxies: the outer one added the client, the inner one the outer one.
        (2, PROXY, "6.6.6.6, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        # Fewer hops than proxies: the request did not come through them; the peer.
        (2, "198.51.100.4", "6.6.6.6", "198.51.100.4"),
        (1, "198.51.100.4", "", "198.51.100.4"),
        # Some proxies write the port.
        (1, PROXY, "6.6.6.6, 203.0.113.7:51234", "203.0.113.7"),
        (1, PROXY, "[2001:db8::7]:443", "2001:db8::7"),
        (1, PROXY, "2001:db8::7", "2001:db8::7"),
        # What is not an address is not recorded as one.
        (1, PROXY, "6.6.6.6, unknown", None),
    ],
)
def test_the_client_ip_is_the_hop_the_trusted_proxies_added(
    settings, proxies, remote, forwarded, expected
):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    assert client_ip(request) == expected


def test_a_spoofed_first_hop_does_not_reach_the_audit_log(client, personas, settings):
    settings.TRUSTED_PROXY_COUNT = 1

    client.post(
        LOGIN_URL,
        {"login": personas.requester.email, "password": PASSWORD},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7",
    )

    event = AuditEvent.objects.get(action="auth.login")
    assert event.ip_address == "203.0.113.7"


def failed_login(client, ip: str, spoofed: str, email: str) -> str:
    response = client.post(
        LOGIN_URL,
        {"login": email, "password": "not-the-password-at-all"},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=f"{spoofed}, {ip}",
    )
    return response.content.decode()


LIMITED = "Too many failed login attempts. Try again later."


def test_the_login_rate_limit_counts_each_client_behind_the_proxy(client, personas, settings):
    # allauth's per-IP limit on failed logins ("10/m/ip") counts the client the proxy saw:
    # a new made-up first hop each time does not escape it...
    settings.TRUSTED_PROXY_COUNT = 1
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login_failed": "3/m/ip"}
    for n in range(3):
        assert LIMITED not in failed_login(client, "203.0.113.7", f"6.6.6.{n}", f"u{n}@x.org")
    assert LIMITED in failed_login(client, "203.0.113.7", "6.6.6.99", "u9@x.org")

    # ...and another client behind the same proxy has a count of its own.
    assert LIMITED not in failed_login(client, "203.0.113.8", "6.6.6.1", "u1@x.org")
    response = client.post(
        LOGIN_URL,
        {"login": personas.requester.email, "password": PASSWORD},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="203.0.113.8",
    )
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="auth.login").ip_address == "203.0.113.8"
    limited = AuditEvent.objects.filter(action="auth.login_failed").order_by("id")
    assert {e.ip_address for e in limited} == {"203.0.113.7", "203.0.113.8"}
