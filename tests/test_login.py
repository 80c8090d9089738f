"""Password login, logout, failed logins and their rate limit, and closed sign-up."""

from __future__ import annotations

import json

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.urls import reverse

from access.models import User
from audit.models import AuditEvent
from tests.fixtures import PASSWORD

LOGIN_URL = reverse("account_login")
LOGOUT_URL = reverse("account_logout")
SIGNUP_URL = reverse("account_signup")
WRONG_PASSWORD = "not-the-password-at-all"


@pytest.fixture(autouse=True)
def _empty_cache():
    # allauth keeps its rate-limit counters in the cache.
    cache.clear()
    yield
    cache.clear()


def failed_login_limit() -> int:
    """The smallest number of failures the configured limits allow ("10/m/ip,5/5m/key" -> 5)."""
    rule = django_settings.ACCOUNT_RATE_LIMITS["login_failed"]
    return min(int(part.split("/")[0]) for part in rule.split(","))


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_persona_logs_in_with_email_and_password_and_lands_on_the_home_page(client, personas):
    response = client.post(
        LOGIN_URL, {"login": personas.requester.email, "password": PASSWORD}, follow=True
    )

    assert response.redirect_chain == [("/", 302)]
    assert response.wsgi_request.user == personas.requester
    page = response.content.decode()
    assert 'data-testid="current-user"' in page
    assert "Signed in as rob.requester@example.com." in page
    [event] = events("auth.login")
    assert event.actor_id == personas.requester.pk
    assert event.actor_type == "user"
    assert event.target_id == str(personas.requester.pk)
    assert event.details == {"method": "password"}
    assert event.request_id
    assert event.ip_address == "127.0.0.1"


def test_the_email_address_is_matched_whatever_its_case(client, personas):
    response = client.post(LOGIN_URL, {"login": "Rob.Requester@EXAMPLE.com", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert events("auth.login")[0].actor_id == personas.requester.pk


def test_a_login_follows_a_safe_next_url_only(client, personas):
    response = client.post(
        f"{LOGIN_URL}?next=/audit/", {"login": personas.auditor.email, "password": PASSWORD}
    )
    assert response["Location"] == "/audit/"

    client.post(LOGOUT_URL)
    response = client.post(
        f"{LOGIN_URL}?next=https://evil.example.com/",
        {"login": personas.auditor.email, "password": PASSWORD},
    )
    assert response["Location"] == "/"


def test_the_home_page_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN_URL}?next=/"


def test_the_login_page_renders_in_the_site_layout(client, db):
    response = client.get(LOGIN_URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert "<title>Sign in · Portcullis</title>" in page
    assert '<a class="brand" href="/">Portcullis</a>' in page
    assert 'name="login"' in page and 'type="email"' in page
    assert 'name="password"' in page
    assert page.count("Forgot your password?") == 1
    assert "_helptext" not in page  # no help text, nor a description pointing at none


def test_logout_by_post_ends_the_session_and_is_recorded(client, personas):
    client.force_login(personas.requester)

    response = client.post(LOGOUT_URL)

    assert response.status_code == 302
    assert response["Location"] == LOGIN_URL
    assert client.get("/").status_code == 302
    [event] = events("auth.logout")
    assert event.actor_id == personas.requester.pk
    assert event.target_id == str(personas.requester.pk)


def test_logout_by_get_only_asks_for_confirmation(client, personas):
    client.force_login(personas.requester)

    response = client.get(LOGOUT_URL)

    assert response.status_code == 200
    assert f'action="{LOGOUT_URL}"' in response.content.decode()
    assert client.get("/").status_code == 200
    assert events("auth.logout") == []


def test_a_wrong_password_is_refused_and_recorded_without_the_password(client, personas):
    response = client.post(
        LOGIN_URL, {"login": personas.requester.email, "password": WRONG_PASSWORD}
    )

    assert response.status_code == 200
    assert "The email address and/or password you specified are not correct." in (
        response.content.decode()
    )
    assert not response.wsgi_request.user.is_authenticated
    assert events("auth.login") == []
    [event] = events("auth.login_failed")
    assert event.actor_id is None
    assert event.actor_name == "anonymous (rob.requester@example.com)"
    assert event.target_type == "access.user"
    assert event.target_id == str(personas.requester.pk)
    assert event.details == {
        "method": "password",
        "identifier": "rob.requester@example.com",
        "reason": "invalid_credentials",
        "known_user": True,
    }
    stored = json.dumps([event.details, event.actor_name, event.target_label])
    assert WRONG_PASSWORD not in stored
    assert "*****" not in stored


def test_a_failed_login_for_an_unknown_email_names_it_without_a_user(client, db):
    client.post(LOGIN_URL, {"login": "Nobody@Example.com", "password": WRONG_PASSWORD})

    [event] = events("auth.login_failed")
    assert event.target_type == "access.user"
    assert event.target_id == ""
    assert event.target_label == "nobody@example.com"
    assert event.details["identifier"] == "nobody@example.com"
    assert event.details["known_user"] is False


def test_an_inactive_user_cannot_log_in(client, personas):
    personas.outsider.is_active = False
    personas.outsider.save(update_fields=["is_active"])

    client.post(LOGIN_URL, {"login": personas.outsider.email, "password": PASSWORD})

    assert client.get("/").status_code == 302
    assert events("auth.login") == []


def test_repeated_failures_for_one_account_lock_it_out_even_with_the_right_password(
    client, personas
):
    limit = failed_login_limit()
    email = personas.requester.email
    for _ in range(limit):
        response = client.post(LOGIN_URL, {"login": email, "password": WRONG_PASSWORD})
        assert "Too many failed login attempts" not in response.content.decode()

    response = client.post(LOGIN_URL, {"login": email, "password": PASSWORD})

    # allauth answers with the login form again and this message, not with a 429.
    assert response.status_code == 200
    assert "Too many failed login attempts. Try again later." in response.content.decode()
    assert 'data-testid="login-error"' in response.content.decode()
    assert not response.wsgi_request.user.is_authenticated
    assert events("auth.login") == []
    failures = events("auth.login_failed")
    assert [e.details["reason"] for e in failures] == ["invalid_credentials"] * limit + [
        "rate_limited"
    ]
    assert failures[-1].details["identifier"] == email
    assert PASSWORD not in json.dumps(failures[-1].details)

    # Another account from another address is not affected.
    other = client.post(
        LOGIN_URL,
        {"login": personas.auditor.email, "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
    )
    assert other.status_code == 302


def test_failures_across_many_accounts_from_one_address_are_limited_too(client, personas):
    # The per-IP part of the limit stops password spraying over many accounts.
    rule = django_settings.ACCOUNT_RATE_LIMITS["login_failed"]
    per_ip = next(int(part.split("/")[0]) for part in rule.split(",") if part.endswith("/ip"))
    for n in range(per_ip):
        client.post(LOGIN_URL, {"login": f"user{n}@example.com", "password": WRONG_PASSWORD})

    response = client.post(LOGIN_URL, {"login": personas.requester.email, "password": PASSWORD})

    assert "Too many failed login attempts. Try again later." in response.content.decode()
    assert not response.wsgi_request.user.is_authenticated


def test_sign_up_is_closed_by_default(client, db):
    assert django_settings.OPEN_SIGNUP is False

    page = client.get(SIGNUP_URL)
    response = client.post(
        SIGNUP_URL,
        {"email": "newcomer@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert page.status_code == 200
    assert "Sign-up is closed" in page.content.decode()
    assert 'data-testid="signup-closed"' in response.content.decode()
    assert not User.objects.filter(email="newcomer@example.com").exists()
    assert not response.wsgi_request.user.is_authenticated
    assert events("user.created") == []


def test_sign_up_opens_when_the_setting_is_on(client, db, settings):
    settings.OPEN_SIGNUP = True

    page = client.get(SIGNUP_URL)
    response = client.post(
        SIGNUP_URL,
        {"email": "Newcomer@Example.com", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert 'name="password1"' in page.content.decode()
    assert response.status_code == 302
    user = User.objects.get(email="newcomer@example.com")
    assert user.check_password(PASSWORD)
    assert client.get("/").wsgi_request.user == user
    [created] = events("user.created")
    assert created.actor_id == user.pk
    assert created.details == {"source": "signup", "email": "newcomer@example.com"}
    assert events("auth.login")[0].actor_id == user.pk
