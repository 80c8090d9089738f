"""The API's rate limits: per user, per client IP for bad tokens, and a stricter one on
creating API tokens (API and page together). Over the rate: 429 with Retry-After.

The suite runs with the limits on at their configured rates; tests start with nothing
counted (tests/fixtures.py empties the cache), so only a test that means to reach a limit
does."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import ApiToken
from access.tests.test_api import bearer, session
from access.tokens import create_api_token

ME = "/api/v1/me/"
TOKENS = "/api/v1/tokens/"


def rate(scope: str) -> int:
    """The configured number of requests of a scope ("60/minute" -> 60)."""
    return int(django_settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope].split("/")[0])


def test_the_suite_runs_with_the_api_throttled():
    config = django_settings.REST_FRAMEWORK
    assert config["DEFAULT_THROTTLE_CLASSES"] == [
        "access.api.throttling.AnonThrottle",
        "access.api.throttling.UserThrottle",
    ]
    assert config["DEFAULT_THROTTLE_RATES"] == {
        "anon": "60/minute",
        "user": "600/minute",
        "token_create": "20/hour",
    }


@pytest.fixture
def user_rate_of_5(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "user": "5/minute",
        },
    }


def test_a_user_over_the_rate_gets_429_with_retry_after(personas, user_rate_of_5):
    client = bearer(personas.requester)
    for _ in range(5):
        assert client.get(ME).status_code == 200

    refused = client.get(ME)

    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("Request was throttled.")


def test_the_user_rate_counts_every_token_and_the_session_together(personas, user_rate_of_5):
    by_token, by_other_token, by_session = (
        bearer(personas.requester),
        bearer(personas.requester),
        session(personas.requester),
    )
    for client in (by_token, by_other_token, by_session, by_token, by_other_token):
        assert client.get(ME).status_code == 200

    assert by_session.get(ME).status_code == 429
    # Someone else is not slowed down.
    assert bearer(personas.outsider).get(ME).status_code == 200


def test_the_allowance_comes_back_when_the_window_has_passed(personas, user_rate_of_5):
    client = bearer(personas.requester)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            client.get(ME)
        assert client.get(ME).status_code == 429
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        assert client.get(ME).status_code == 200


def test_the_configured_user_rate_is_enforced(personas):
    # Not an overridden rate: the one deployments get unless they set API_THROTTLE_USER.
    client = bearer(personas.requester)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        statuses = [client.get(ME).status_code for _ in range(rate("user") + 1)]
    assert statuses[:-1] == [200] * rate("user")
    assert statuses[-1] == 429


# Bad tokens, per client IP ---------------------------------------------------------------------
def bad_token(remote: str = "198.51.100.4", **headers: str) -> int:
    client = APIClient(REMOTE_ADDR=remote, **headers)  # type: ignore[arg-type]  # headers
    client.credentials(HTTP_AUTHORIZATION="Bearer pcl_not-a-real-token")
    return client.get(ME).status_code


def test_guessing_tokens_is_throttled_per_address(personas):
    # DRF throttles after authentication, which refuses a bad token: this limit is ours.
    _, raw = create_api_token(personas.requester, "real")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert [bad_token() for _ in range(rate("anon"))] == [401] * rate("anon")
        refused = APIClient(REMOTE_ADDR="198.51.100.4")
        refused.credentials(HTTP_AUTHORIZATION="Bearer pcl_not-a-real-token")
        response = refused.get(ME)
        assert response.status_code == 429
        assert int(response["Retry-After"]) >= 1
        # Other addresses are not affected, nor the session of someone at that address.
        assert bad_token(remote="198.51.100.5") == 401
        signed_in = APIClient(REMOTE_ADDR="198.51.100.4")
        signed_in.force_login(personas.requester)
        assert signed_in.get(ME).status_code == 200
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        assert bad_token() == 401


def test_bad_tokens_from_an_address_do_not_lock_out_the_valid_tokens_used_there(personas):
    # One machine behind an office's NAT (or, with TRUSTED_PROXY_COUNT unset behind a load
    # balancer, anyone) sending bad tokens: before, every token from that address then got
    # 429, the colleagues' CI jobs included, for as long as the bad tokens kept coming.
    _, raw = create_api_token(personas.requester, "ci")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(rate("anon") + 5):
            bad_token()
        assert bad_token() == 429
        colleague = APIClient(REMOTE_ADDR="198.51.100.4")
        colleague.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        response = colleague.get(ME)
        assert response.status_code == 200
        assert response.json()["email"] == personas.requester.email


def test_an_ipv6_client_is_counted_by_its_64_so_new_addresses_bring_no_new_allowance(personas):
    # One host is given a /64 and may use any of its 2**64 addresses: before, each new
    # address came with a fresh allowance of bad tokens.
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for n in range(rate("anon")):
            bad_token(remote=f"2001:db8:1:2::{n + 1:x}")
        assert bad_token(remote="2001:db8:1:2:ffff:ffff:ffff:ffff") == 429
        # The next /64 is another site.
        assert bad_token(remote="2001:db8:1:3::1") == 401


def test_a_made_up_forwarded_hop_does_not_escape_the_bad_token_limit(personas, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for n in range(rate("anon")):
            bad_token(remote="10.0.0.1", HTTP_X_FORWARDED_FOR=f"6.6.{n}.1, 203.0.113.7")
        assert bad_token(remote="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7") == 429
        # Another client behind the same proxy is counted on its own.
        assert bad_token(remote="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.8") == 401


# Creating tokens -------------------------------------------------------------------------------
def test_creating_tokens_has_a_stricter_limit_shared_by_the_api_and_the_page(personas):
    client = bearer(personas.requester)
    limit = rate("token_create")
    assert limit < rate("user")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for n in range(limit - 1):
            assert (
                client.post(
                    TOKENS, {"name": f"ci-{n}", "expires_in_days": 1}, format="json"
                ).status_code
                == 201
            )
        page = Client()
        page.force_login(personas.requester)
        assert page.post(reverse("api-token-create"), {"name": "laptop"}).status_code == 200

        refused = client.post(TOKENS, {"name": "one-too-many", "expires_in_days": 1}, format="json")
        assert refused.status_code == 429
        assert 3500 <= int(refused["Retry-After"]) <= 3600
        refused_page = page.post(reverse("api-token-create"), {"name": "one-too-many"})
        assert refused_page.status_code == 429
        assert "You have created API tokens too often. Try again in 60 minutes." in (
            refused_page.content.decode()
        )
        assert 3500 <= int(refused_page["Retry-After"]) <= 3600
        # Other calls are not held back, nor is anyone else's token creation.
        assert client.get(TOKENS).status_code == 200
        other = bearer(personas.outsider)
        assert (
            other.post(TOKENS, {"name": "ci", "expires_in_days": 1}, format="json").status_code
            == 201
        )

    created = ApiToken.objects.filter(user=personas.requester).exclude(name="tests")
    assert created.count() == limit
    with time_machine.travel(start + timedelta(hours=1, seconds=1), tick=False):
        assert (
            client.post(
                TOKENS, {"name": "next-hour", "expires_in_days": 1}, format="json"
            ).status_code
            == 201
        )
