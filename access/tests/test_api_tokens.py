"""Managing one's own API tokens through the API: /api/v1/tokens/."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import ApiToken
from access.tokens import create_api_token
from audit.models import AuditEvent

URL = "/api/v1/tokens/"


def revoke_url(token: ApiToken) -> str:
    return f"{URL}{token.pk}/revoke/"


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def session(user, *, enforce_csrf: bool = False) -> APIClient:
    client = APIClient(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


def test_it_lists_my_tokens_only_and_never_their_secrets(personas):
    mine, raw = create_api_token(personas.requester, "mine")
    create_api_token(personas.outsider, "theirs")

    response = bearer(raw).get(URL)

    assert response.status_code == 200
    results = response.json()["results"]
    assert [t["name"] for t in results] == ["mine"]
    assert results[0]["prefix"] == mine.prefix
    assert results[0]["status"] == "active"
    assert set(results[0]) == {
        "id",
        "name",
        "prefix",
        "status",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "read_only",
    }
    assert raw not in response.content.decode()
    assert mine.digest not in response.content.decode()


def test_the_token_list_shows_expired_and_revoked_tokens_as_such(personas):
    _, raw = create_api_token(personas.requester, "caller")
    expired, _ = create_api_token(
        personas.requester, "expired", expires_at=timezone.now() + timedelta(days=1)
    )
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    revoked, _ = create_api_token(personas.requester, "revoked")
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    statuses = {t["name"]: t["status"] for t in bearer(raw).get(URL).json()["results"]}

    assert statuses == {"caller": "active", "expired": "expired", "revoked": "revoked"}


def test_creating_a_token_returns_its_secret_once_and_records_it(personas):
    caller, raw = create_api_token(personas.requester, "caller")
    client = bearer(raw)

    response = client.post(URL, {"name": "ci", "expires_in_days": 7}, format="json")

    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    new_raw = body["token"]
    new = ApiToken.objects.get(pk=body["id"])
    assert new.user == personas.requester
    assert new.digest == hashlib.sha256(new_raw.encode()).hexdigest() != new_raw
    assert timedelta(days=6, hours=23) < new.expires_at - timezone.now() <= timedelta(days=7)
    # The secret is not readable afterwards.
    assert new_raw not in client.get(URL).content.decode()
    assert bearer(new_raw).get("/api/v1/me/").status_code == 200
    event = AuditEvent.objects.filter(action="api_token.created").latest("id")
    assert event.actor_id == personas.requester.pk
    assert event.actor_type == "api"
    assert event.target_id == str(new.pk)
    # The event says which token did it, by prefix only.
    assert event.details["api_token"] == caller.prefix
    stored = json.dumps(event.details) + event.target_label
    assert new_raw not in stored
    assert new.digest not in stored
    assert raw not in stored


def test_creating_a_token_with_a_session_needs_the_csrf_token(personas):
    client = session(personas.requester, enforce_csrf=True)

    refused = client.post(URL, {"name": "ci"}, format="json")

    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert not ApiToken.objects.exists()
    # Any page sets the CSRF cookie; with it as header, the same call works.
    client.get("/settings/tokens/")
    csrf = client.cookies["csrftoken"].value
    accepted = client.post(URL, {"name": "ci"}, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert accepted.status_code == 201
    assert accepted.json()["expires_at"] is not None  # every token expires
    event = AuditEvent.objects.get(action="api_token.created")
    assert event.actor_id == personas.requester.pk
    assert event.actor_type == "user"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "x", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "expires_in_days": 366}, "expires_in_days"),
        ({"name": "x", "expires_in_days": "soon"}, "expires_in_days"),
    ],
)
def test_it_refuses_a_bad_token_request_and_names_the_field(personas, data, field):
    _, raw = create_api_token(personas.requester, "caller")

    response = bearer(raw).post(URL, data, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert ApiToken.objects.count() == 1


def test_a_token_cannot_create_a_token_that_outlives_it(personas):
    _, raw = create_api_token(
        personas.requester, "short", expires_at=timezone.now() + timedelta(days=2)
    )
    client = bearer(raw)

    forever = client.post(URL, {"name": "forever"}, format="json")
    longer = client.post(URL, {"name": "longer", "expires_in_days": 3}, format="json")
    shorter = client.post(URL, {"name": "shorter", "expires_in_days": 1}, format="json")

    assert forever.status_code == 400
    assert "cannot outlive it" in forever.json()["expires_in_days"][0]
    assert longer.status_code == 400
    assert shorter.status_code == 201
    assert set(ApiToken.objects.values_list("name", flat=True)) == {"short", "shorter"}


def test_revoking_my_token_works_at_once_and_is_recorded(personas):
    target, target_raw = create_api_token(personas.requester, "old laptop")
    _, raw = create_api_token(personas.requester, "caller")

    response = bearer(raw).post(revoke_url(target))

    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["revoked_at"] is not None
    assert bearer(target_raw).get(URL).status_code == 401
    event = AuditEvent.objects.get(action="api_token.revoked")
    assert event.actor_id == personas.requester.pk
    assert event.target_id == str(target.pk)
    assert target_raw not in json.dumps(event.details)
    assert target.digest not in json.dumps(event.details)


def test_a_token_may_revoke_itself(personas):
    token, raw = create_api_token(personas.requester, "caller")
    client = bearer(raw)

    assert client.post(revoke_url(token)).status_code == 200
    assert client.get(URL).status_code == 401


def test_revoking_with_a_session_works(personas):
    token, _ = create_api_token(personas.requester, "laptop")

    response = session(personas.requester).post(revoke_url(token))

    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_revoking_someone_elses_token_is_not_found(personas):
    theirs, theirs_raw = create_api_token(personas.outsider, "theirs")

    for user in (personas.requester, personas.admin):
        _, raw = create_api_token(user, "caller")
        assert bearer(raw).post(revoke_url(theirs)).status_code == 404

    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert bearer(theirs_raw).get(URL).status_code == 200
    assert not AuditEvent.objects.filter(action="api_token.revoked").exists()


def test_it_refuses_get_on_revoke(personas):
    token, raw = create_api_token(personas.requester, "caller")

    assert bearer(raw).get(revoke_url(token)).status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None


@pytest.mark.parametrize(("method", "url"), [("get", URL), ("post", URL), ("post", "revoke")])
def test_anonymous_callers_get_401(personas, method, url):
    token, _ = create_api_token(personas.requester, "laptop")
    url = revoke_url(token) if url == "revoke" else url

    response = getattr(APIClient(), method)(url, {"name": "x"}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    token.refresh_from_db()
    assert token.revoked_at is None
    assert ApiToken.objects.count() == 1


def test_the_token_list_costs_the_same_queries_for_5_and_50_tokens(
    personas, django_assert_max_num_queries
):
    _, raw = create_api_token(personas.requester, "caller")
    client = bearer(raw)
    client.get(URL)  # the first use records last_used_at; later ones within a minute do not
    for count in (5, 50):
        while ApiToken.objects.filter(user=personas.requester).count() < count:
            create_api_token(personas.requester, "t")
        # token, tokens page
        with django_assert_max_num_queries(2):
            response = client.get(URL, {"page_size": 100})
        assert len(response.json()["results"]) == count
