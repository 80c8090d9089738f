"""Personal API tokens: the service functions and the settings pages."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import ApiToken
from access.tokens import create_api_token, revoke_api_token
from audit.models import AuditEvent

RAW_TOKEN = re.compile(r"pcl_[A-Za-z0-9_\-]{43}")
LIST_URL = "/settings/tokens/"
CREATE_URL = "/settings/tokens/new/"
ME_URL = "/api/v1/me/"


def revoke_url(token: ApiToken) -> str:
    return f"/settings/tokens/{token.pk}/revoke/"


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def assert_no_secret_in_audit_log(*secrets: str) -> None:
    for event in AuditEvent.objects.all():
        stored = json.dumps(event.details) + event.target_label + event.actor_name
        for secret in secrets:
            assert secret not in stored, f"{event.action} leaks a token secret"


# Service functions -----------------------------------------------------------------------------


def test_it_stores_only_the_digest_of_a_new_token(personas):
    token, raw = create_api_token(personas.requester, "  laptop  ")

    stored = ApiToken.objects.get(pk=token.pk)
    assert raw.startswith("pcl_")
    assert stored.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert stored.digest != raw
    assert raw not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    assert stored.name == "laptop"
    assert raw.startswith(stored.prefix)
    assert len(stored.prefix) == 12


def test_it_records_the_creation_with_its_actor_and_without_the_secret(personas):
    token, raw = create_api_token(personas.requester, "ci")

    event = AuditEvent.objects.get(action="api_token.created")
    assert event.actor_id == personas.requester.pk
    assert event.actor_name == personas.requester.username
    assert event.target_type == "access.apitoken"
    assert event.target_id == str(token.pk)
    assert event.details["name"] == "ci"
    assert event.details["prefix"] == token.prefix
    assert event.details["expires_at"] == token.expires_at.isoformat()
    assert_no_secret_in_audit_log(raw, token.digest)


def test_it_refuses_a_token_without_a_name(personas):
    with pytest.raises(ValidationError, match="Give the token a name"):
        create_api_token(personas.requester, "   ")
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action="api_token.created").exists()


def test_it_refuses_an_expiry_in_the_past(personas):
    with pytest.raises(ValidationError, match="in the future"):
        create_api_token(personas.requester, "old", expires_at=timezone.now() - timedelta(days=1))
    assert not ApiToken.objects.exists()


def test_it_refuses_tokens_for_a_deactivated_user(personas):
    personas.requester.is_active = False
    personas.requester.save()
    with pytest.raises(PermissionDenied):
        create_api_token(personas.requester, "laptop")


def test_it_records_a_revocation_once(personas):
    token, raw = create_api_token(personas.requester, "laptop")

    revoke_api_token(token, actor=personas.requester)
    revoke_api_token(token, actor=personas.requester)

    token.refresh_from_db()
    assert token.revoked_at is not None
    events = AuditEvent.objects.filter(action="api_token.revoked")
    assert events.count() == 1
    event = events.get()
    assert event.actor_id == personas.requester.pk
    assert event.target_id == str(token.pk)
    assert event.details == {"name": "laptop", "prefix": token.prefix, "user_id": token.user_id}
    assert_no_secret_in_audit_log(raw, token.digest)


def test_an_admin_may_revoke_someone_elses_token(personas):
    token, _ = create_api_token(personas.requester, "laptop")

    revoke_api_token(token, actor=personas.admin)

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.get(action="api_token.revoked").actor_id == personas.admin.pk


def test_it_refuses_to_let_a_user_revoke_someone_elses_token(personas):
    token, _ = create_api_token(personas.requester, "laptop")

    with pytest.raises(PermissionDenied):
        revoke_api_token(token, actor=personas.outsider)

    token.refresh_from_db()
    assert token.revoked_at is None
    assert not AuditEvent.objects.filter(action="api_token.revoked").exists()


# Authentication with a token ---------------------------------------------------------------------


def test_a_token_authenticates_api_calls_and_records_its_last_use(personas):
    token, raw = create_api_token(personas.requester, "laptop")
    assert token.last_used_at is None

    response = bearer(raw).get(ME_URL)

    assert response.status_code == 200
    assert response.json()["email"] == personas.requester.email
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert timezone.now() - token.last_used_at < timedelta(minutes=1)


def test_a_revoked_token_stops_working_at_once(personas):
    token, raw = create_api_token(personas.requester, "laptop")
    client = bearer(raw)
    assert client.get(ME_URL).status_code == 200

    revoke_api_token(token, actor=personas.requester)

    response = client.get(ME_URL)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_is_refused(personas):
    token, raw = create_api_token(
        personas.requester, "short", expires_at=timezone.now() + timedelta(days=1)
    )
    assert bearer(raw).get(ME_URL).status_code == 200
    # Move the token's clock past its expiry rather than waiting for it.
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert bearer(raw).get(ME_URL).status_code == 401


def test_a_token_of_a_deactivated_user_is_refused(personas):
    _, raw = create_api_token(personas.requester, "laptop")
    personas.requester.is_active = False
    personas.requester.save()

    assert bearer(raw).get(ME_URL).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer pcl_not-a-real-token",
        "Bearer ghp_someoneelsestoken",
        "Bearer",
        "Bearer pcl_a pcl_b",
    ],
)
def test_a_malformed_or_unknown_token_is_refused(personas, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(ME_URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


# The settings pages -----------------------------------------------------------------------------


def test_creating_a_token_shows_the_secret_once(personas):
    client = logged_in(personas.requester)

    response = client.post(CREATE_URL, {"name": "laptop", "expires_in_days": "30"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raws = set(RAW_TOKEN.findall(response.content.decode()))
    assert len(raws) == 1
    raw = raws.pop()
    token = ApiToken.objects.get(user=personas.requester)
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    # Never again: not on the list, not kept in the session for later.
    listing = client.get(LIST_URL)
    assert listing.status_code == 200
    assert raw not in listing.content.decode()
    assert token.prefix in listing.content.decode()
    assert raw not in json.dumps(dict(client.session.items()), default=str)
    # And it works.
    assert bearer(raw).get(ME_URL).status_code == 200
    event = AuditEvent.objects.get(action="api_token.created")
    assert event.actor_id == personas.requester.pk
    assert_no_secret_in_audit_log(raw, token.digest)


def test_a_token_without_a_chosen_expiry_lasts_the_longest_allowed(personas, settings):
    settings.API_TOKEN_MAX_DAYS = 90
    client = logged_in(personas.requester)

    response = client.post(CREATE_URL, {"name": "ci", "expires_in_days": ""})

    assert response.status_code == 200
    expires_at = ApiToken.objects.get(user=personas.requester).expires_at
    assert abs(expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "expires_in_days": ""}, "Give the token a name"),
        ({"name": "x", "expires_in_days": "0"}, "from 1 to 365 days"),
        ({"name": "x", "expires_in_days": "366"}, "from 1 to 365 days"),
        ({"name": "x", "expires_in_days": "soon"}, "whole number of days"),
        ({"name": "x" * 101, "expires_in_days": ""}, "at most 100 characters"),
    ],
)
def test_it_refuses_a_bad_token_form_and_says_why(personas, data, message):
    client = logged_in(personas.requester)

    response = client.post(CREATE_URL, data)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not RAW_TOKEN.search(response.content.decode())
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action="api_token.created").exists()


def test_the_list_shows_only_my_tokens(personas):
    create_api_token(personas.requester, "mine")
    create_api_token(personas.outsider, "theirs")

    response = logged_in(personas.requester).get(LIST_URL)

    assert response.status_code == 200
    body = response.content.decode()
    assert "mine" in body
    assert "theirs" not in body


def test_the_token_list_costs_the_same_queries_for_5_and_50_tokens(
    personas, django_assert_max_num_queries
):
    client = logged_in(personas.requester)
    for count in (5, 50):
        while ApiToken.objects.filter(user=personas.requester).count() < count:
            create_api_token(personas.requester, "t")
        # session, user, role lookup, tokens
        with django_assert_max_num_queries(4):
            response = client.get(LIST_URL)
        assert response.content.decode().count("<code>pcl_") == count


def test_revoking_my_token_works_and_is_recorded(personas):
    token, raw = create_api_token(personas.requester, "laptop")
    client = logged_in(personas.requester)

    response = client.post(revoke_url(token))

    assert response.status_code == 302
    assert response["Location"] == reverse("api-token-list")
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(raw).get(ME_URL).status_code == 401
    event = AuditEvent.objects.get(action="api_token.revoked")
    assert event.actor_id == personas.requester.pk
    assert event.target_id == str(token.pk)
    assert_no_secret_in_audit_log(raw, token.digest)
    assert "is revoked" in client.get(LIST_URL).content.decode()


def test_revoking_someone_elses_token_is_not_found(personas):
    token, raw = create_api_token(personas.outsider, "theirs")

    response = logged_in(personas.requester).post(revoke_url(token))

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert bearer(raw).get(ME_URL).status_code == 200
    assert not AuditEvent.objects.filter(action="api_token.revoked").exists()


def test_even_an_admin_cannot_revoke_someone_elses_token_from_their_settings_page(personas):
    token, _ = create_api_token(personas.requester, "theirs")

    assert logged_in(personas.admin).post(revoke_url(token)).status_code == 404


@pytest.mark.parametrize("url", [CREATE_URL, "revoke"])
def test_it_refuses_get_where_only_post_makes_sense(personas, url):
    token, _ = create_api_token(personas.requester, "laptop")
    url = revoke_url(token) if url == "revoke" else url

    response = logged_in(personas.requester).get(url)

    assert response.status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None
    assert ApiToken.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "url"), [("get", LIST_URL), ("post", CREATE_URL), ("post", "revoke")]
)
def test_anonymous_visitors_are_sent_to_login(personas, method, url):
    token, _ = create_api_token(personas.requester, "laptop")
    url = revoke_url(token) if url == "revoke" else url

    response = getattr(Client(), method)(url, {"name": "x"} if method == "post" else None)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    token.refresh_from_db()
    assert token.revoked_at is None
    assert ApiToken.objects.count() == 1


def test_the_page_forms_require_a_csrf_token(personas):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.requester)

    assert client.post(CREATE_URL, {"name": "laptop"}).status_code == 403
    assert not ApiToken.objects.exists()
