"""API tokens last no longer than their user's trust: revoked when the user is deactivated,
limited to API_TOKEN_MAX_DAYS, and optionally read-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import ApiToken
from access.services.grants import offboard_user
from access.tokens import create_api_token
from audit.models import AuditEvent
from config.env import env_positive_int

pytestmark = pytest.mark.django_db

TOKENS_URL = "/api/v1/tokens/"
ME_URL = "/api/v1/me/"


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


# Deactivation ---------------------------------------------------------------------------------
def test_deactivating_a_user_revokes_their_tokens_with_an_event_each(personas):
    rob = personas.requester
    laptop, raw = create_api_token(rob, "laptop")
    ci, _ = create_api_token(rob, "ci")

    rob.is_active = False
    rob.save()
    offboard_user(rob, actor=personas.admin)

    assert ApiToken.objects.filter(user=rob, revoked_at__isnull=True).count() == 0
    events = AuditEvent.objects.filter(action="api_token.revoked").order_by("pk")
    assert [e.target_id for e in events] == [str(laptop.pk), str(ci.pk)]
    assert all(e.actor == personas.admin for e in events)
    assert {e.details["reason"] for e in events} == {"The user was deactivated"}
    # Reactivated, the old token stays dead.
    rob.is_active = True
    rob.save()
    assert bearer(raw).get(ME_URL).status_code == 401


def test_an_admin_setting_someones_password_revokes_their_tokens(personas):
    otto = personas.outsider
    token, raw = create_api_token(otto, "laptop")
    client = Client()
    client.force_login(personas.admin)

    response = client.post(
        reverse("admin:auth_user_password_change", args=[otto.pk]),
        {
            "password1": "a-new-long-passphrase",
            "password2": "a-new-long-passphrase",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    revoked = AuditEvent.objects.get(action="api_token.revoked")
    assert revoked.actor == personas.admin
    assert revoked.details["reason"] == "An admin changed the user's password."
    assert bearer(raw).get(ME_URL).status_code == 401


# Lifetime -------------------------------------------------------------------------------------
def test_every_token_expires_by_the_maximum_lifetime(personas, settings):
    settings.API_TOKEN_MAX_DAYS = 30
    token, raw = create_api_token(personas.requester, "ci")

    assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        assert bearer(raw).get(ME_URL).status_code == 401


def test_lowering_the_maximum_lifetime_ends_tokens_made_under_the_old_one(personas, settings):
    # API_TOKEN_MAX_DAYS bounds every token, not only those made after it was set.
    settings.API_TOKEN_MAX_DAYS = 365
    token, raw = create_api_token(personas.requester, "ci")
    settings.API_TOKEN_MAX_DAYS = 30

    with time_machine.travel(timezone.now() + timedelta(days=31)):
        assert bearer(raw).get(ME_URL).status_code == 401
        listed = bearer_session(personas.requester).get(TOKENS_URL).json()["results"]
        assert [t["status"] for t in listed if t["id"] == token.pk] == ["expired"]


def test_a_token_cut_short_by_a_lowered_maximum_mints_none_that_outlives_it(personas, settings):
    settings.API_TOKEN_MAX_DAYS = 365
    _, raw = create_api_token(personas.requester, "ci")
    settings.API_TOKEN_MAX_DAYS = 30

    with time_machine.travel(timezone.now() + timedelta(days=20)):
        response = bearer(raw).post(TOKENS_URL, {"name": "renewed"}, format="json")

    assert response.status_code == 400
    assert "cannot outlive it" in response.json()["expires_in_days"][0]


def bearer_session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_a_token_longer_than_the_maximum_lifetime_is_refused_naming_the_limit(personas, settings):
    settings.API_TOKEN_MAX_DAYS = 30
    client = APIClient()
    client.force_login(personas.requester)

    response = client.post(TOKENS_URL, {"name": "ci", "expires_in_days": 31}, format="json")

    assert response.status_code == 400
    assert "from 1 to 30 days" in response.json()["expires_in_days"][0]
    assert not ApiToken.objects.exists()


def test_the_maximum_lifetime_setting_must_be_a_positive_number_of_days(monkeypatch):
    monkeypatch.setenv("API_TOKEN_MAX_DAYS", "0")
    with pytest.raises(ImproperlyConfigured, match="API_TOKEN_MAX_DAYS=0 must be"):
        env_positive_int("API_TOKEN_MAX_DAYS", 365)
    monkeypatch.setenv("API_TOKEN_MAX_DAYS", "90")
    assert env_positive_int("API_TOKEN_MAX_DAYS", 365) == 90


# Read-only scope ------------------------------------------------------------------------------
def test_a_read_only_token_reads_but_is_refused_anything_else_with_403(personas):
    token, raw = create_api_token(personas.requester, "dashboards", read_only=True)
    client = bearer(raw)

    assert client.get(ME_URL).status_code == 200
    refused = client.post(TOKENS_URL, {"name": "more"}, format="json")
    assert refused.status_code == 403
    assert "read-only" in refused.json()["detail"]
    revoke = client.post(f"{TOKENS_URL}{token.pk}/revoke/")
    assert revoke.status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None
    assert ApiToken.objects.count() == 1


def test_the_api_creates_a_read_only_token_when_asked(personas):
    client = APIClient()
    client.force_login(personas.requester)

    response = client.post(TOKENS_URL, {"name": "ro", "read_only": True}, format="json")

    assert response.status_code == 201
    assert response.json()["read_only"] is True
    assert ApiToken.objects.get().read_only is True
    assert AuditEvent.objects.get(action="api_token.created").details["read_only"] is True


def test_the_tokens_page_creates_a_read_only_token_when_ticked(personas):
    client = Client()
    client.force_login(personas.requester)

    response = client.post("/settings/tokens/new/", {"name": "ro", "read_only": "on"})

    assert response.status_code == 200
    token = ApiToken.objects.get()
    assert token.read_only is True
    assert "Read-only" in client.get("/settings/tokens/").content.decode()
