"""OpenID Connect single sign-on against the test identity provider (a real HTTP server).

Portcullis's side is driven with Django's test client, the identity provider's
side with requests: the login POST redirects to the provider's authorize URL,
the provider's form is posted with the subject to sign in as, and the provider's
redirect back to the callback is followed with the test client.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from access import tokens
from access.models import User
from audit.models import AuditEvent
from tests.fixtures import PASSWORD, make_user, set_idp_user

SSO_LOGIN_URL = reverse("openid_connect_login", kwargs={"provider_id": "sso"})
SSO_CALLBACK_URL = reverse("openid_connect_callback", kwargs={"provider_id": "sso"})


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def sso(settings, idp: str) -> str:
    """Single sign-on configured against the test identity provider, as settings.py
    builds it from the SSO_OIDC_* variables."""
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [
                {
                    "provider_id": "sso",
                    "name": "Single sign-on",
                    "client_id": "portcullis",
                    "secret": "test-client-secret",
                    "settings": {"server_url": idp, "token_auth_method": "client_secret_post"},
                }
            ],
        }
    }
    settings.SSO_CREATE_USERS = True
    return idp


def new_subject() -> str:
    # The provider runs once per test session: every test signs in a subject of its own.
    return f"sub-{uuid.uuid4().hex}"


def sign_in_with_sso(client: Client, idp: str, sub: str, next_url: str = "") -> HttpResponse:
    """Runs the whole authorization-code flow and returns Portcullis's answer to the callback."""
    start = client.post(SSO_LOGIN_URL + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302, start.content
    authorize_url = start["Location"]
    assert authorize_url.startswith(f"{idp}/oauth2/authorize?")
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["client_id"] == ["portcullis"]
    assert set(query["scope"][0].split()) == {"openid", "profile", "email"}
    assert query["code_challenge_method"] == ["S256"]

    consent = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    back = urlsplit(consent.headers["Location"])
    assert back.path == SSO_CALLBACK_URL
    assert "code" in parse_qs(back.query)
    return client.get(f"{back.path}?{back.query}")  # type: ignore[return-value]  # the test client's


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_first_sso_login_creates_the_user_just_in_time_and_signs_them_in(client, db, sso):
    sub = new_subject()
    set_idp_user(
        sso,
        sub,
        {
            "email": "Nina.New@Example.com",
            "email_verified": True,
            "given_name": "Nina",
            "family_name": "New",
            "preferred_username": "nina",
        },
    )

    response = sign_in_with_sso(client, sso, sub)

    assert response.status_code == 302
    assert response["Location"] == "/"
    user = User.objects.get(email="nina.new@example.com")
    assert (user.first_name, user.last_name, user.username) == ("Nina", "New", "nina")
    assert not user.has_usable_password()
    assert SocialAccount.objects.get(user=user).uid == sub
    home = client.get("/")
    assert home.wsgi_request.user == user
    assert "nina.new@example.com" in home.content.decode()

    [created] = events("user.created")
    assert created.actor_id == user.pk
    assert created.details == {
        "source": "sso",
        "email": "nina.new@example.com",
        "provider": "sso",
        "uid": sub,
    }
    [login] = events("auth.login")
    assert login.actor_id == user.pk
    assert login.details == {"method": "sso", "provider": "sso", "uid": sub}
    assert created.id < login.id


def test_a_returning_sso_user_is_found_by_subject_even_after_an_email_change(client, db, sso):
    sub = new_subject()
    set_idp_user(sso, sub, {"email": "first@example.com", "email_verified": True})
    sign_in_with_sso(client, sso, sub)
    client.post(reverse("account_logout"))
    set_idp_user(sso, sub, {"email": "renamed@example.com", "email_verified": True})

    response = sign_in_with_sso(client, sso, sub)

    assert response.status_code == 302
    assert User.objects.count() == 1
    assert client.get("/").wsgi_request.user.email == "first@example.com"
    assert len(events("user.created")) == 1
    assert [e.details["method"] for e in events("auth.login")] == ["sso", "sso"]


def test_an_existing_user_is_connected_to_the_sso_identity_by_email(client, personas, sso):
    sub = new_subject()
    set_idp_user(sso, sub, {"email": personas.requester.email, "email_verified": True})
    users_before = User.objects.count()

    response = sign_in_with_sso(client, sso, sub)

    assert response.status_code == 302
    assert User.objects.count() == users_before
    assert SocialAccount.objects.get(provider="sso", uid=sub).user == personas.requester
    assert client.get("/").wsgi_request.user == personas.requester
    assert events("user.created") == []
    [connected] = events("auth.sso_connected")
    assert connected.actor_id == personas.requester.pk
    assert connected.details["provider"] == "sso"
    assert connected.details["uid"] == sub
    assert connected.details["email"] == personas.requester.email
    # allauth's safeguard: the address of this account was never verified in
    # Portcullis, so whoever set the password might not own it; the password
    # stops working and the event says so.
    personas.requester.refresh_from_db()
    assert not personas.requester.has_usable_password()
    assert connected.details["passwordless"] is True
    [login] = events("auth.login")
    assert login.actor_id == personas.requester.pk
    assert login.details["method"] == "sso"


def test_an_unverified_email_is_not_linked_to_an_existing_account(client, personas, sso):
    sub = new_subject()
    set_idp_user(sso, sub, {"email": personas.approver.email, "email_verified": False})

    response = sign_in_with_sso(client, sso, sub)

    assert response.status_code == 403
    assert "did not confirm that this email address is verified" in response.content.decode()
    assert not SocialAccount.objects.filter(uid=sub).exists()
    assert not client.get("/").wsgi_request.user.is_authenticated
    personas.approver.refresh_from_db()
    assert personas.approver.check_password(PASSWORD)
    [failed] = events("auth.login_failed")
    assert failed.details["method"] == "sso"
    assert failed.details["reason"] == "unverified_email"
    assert failed.details["identifier"] == personas.approver.email


def test_with_just_in_time_creation_off_an_unknown_user_is_refused(client, db, sso, settings):
    settings.SSO_CREATE_USERS = False
    sub = new_subject()
    set_idp_user(sso, sub, {"email": "stranger@example.com", "email_verified": True})

    response = sign_in_with_sso(client, sso, sub)

    assert response.status_code == 403
    page = response.content.decode()
    assert 'data-testid="sso-refused"' in page
    assert "There is no Portcullis account for stranger@example.com" in page
    assert not User.objects.exists()
    assert not SocialAccount.objects.exists()
    assert not client.get("/").wsgi_request.user.is_authenticated
    assert events("auth.login") == []
    [failed] = events("auth.login_failed")
    assert failed.details == {
        "method": "sso",
        "identifier": "stranger@example.com",
        "reason": "no_account",
        "known_user": False,
        "provider": "sso",
        "uid": sub,
    }


def test_with_just_in_time_creation_off_a_known_user_still_signs_in_and_goes_on(
    client, personas, sso, settings
):
    settings.SSO_CREATE_USERS = False
    sub = new_subject()
    set_idp_user(sso, sub, {"email": personas.auditor.email, "email_verified": True})

    response = sign_in_with_sso(client, sso, sub, next_url="/audit/")

    assert response.status_code == 302
    assert response["Location"] == "/audit/"
    assert client.get("/").wsgi_request.user == personas.auditor


def test_an_identity_without_an_email_address_is_refused(client, db, sso):
    sub = new_subject()
    set_idp_user(sso, sub, {"name": "No Mail"})

    response = sign_in_with_sso(client, sso, sub)

    assert response.status_code == 403
    assert "did not send an email address" in response.content.decode()
    assert not User.objects.exists()
    assert events("auth.login_failed")[0].details["reason"] == "no_email"


def test_sso_logins_start_only_by_post(client, db, sso):
    response = client.get(SSO_LOGIN_URL)

    # A GET shows a confirmation page and does not go to the identity provider.
    assert response.status_code == 200
    assert "Location" not in response
    assert "<form" in response.content.decode()


def test_the_login_page_offers_single_sign_on_only_when_it_is_configured(client, db, settings, idp):
    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"APPS": []}}
    without = client.get(reverse("account_login")).content.decode()
    assert 'data-testid="sso-login"' not in without
    assert "Single sign-on" not in without

    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "APPS": [
                {
                    "provider_id": "sso",
                    "name": "Single sign-on",
                    "client_id": "portcullis",
                    "secret": "",
                    "settings": {"server_url": idp},
                }
            ]
        }
    }
    with_sso = client.get(reverse("account_login") + "?next=/audit/").content.decode()
    assert 'data-testid="sso-login"' in with_sso
    assert "Single sign-on</button>" in with_sso
    # A form posting to the provider's login view, passing the page to return to.
    assert (
        f'<form method="post" action="{SSO_LOGIN_URL}?process=login&amp;next=%2Faudit%2F">'
        in with_sso
    )


def test_an_sso_login_through_the_issuer_aws_trusts_records_the_users_subject(
    client, db, sso, settings
):
    from aws_integration.services import get_aws_settings

    settings.SSO_ISSUER = sso
    aws_settings = get_aws_settings()
    aws_settings.oidc_issuer_url = sso
    aws_settings.save()
    sub = new_subject()
    set_idp_user(sso, sub, {"email": "subject@example.com", "email_verified": True})

    assert sign_in_with_sso(client, sso, sub).status_code == 302

    user = User.objects.get(email="subject@example.com")
    assert user.oidc_subject == sub
    [learned] = events("user.subject_learned")
    assert learned.details["after"] == sub


def test_an_sso_login_through_another_issuer_records_no_subject(client, db, sso, settings):
    from aws_integration.services import get_aws_settings

    settings.SSO_ISSUER = sso
    aws_settings = get_aws_settings()
    aws_settings.oidc_issuer_url = "https://sessions.example.net"
    aws_settings.save()
    sub = new_subject()
    set_idp_user(sso, sub, {"email": "other-issuer@example.com", "email_verified": True})

    assert sign_in_with_sso(client, sso, sub).status_code == 302

    assert User.objects.get(email="other-issuer@example.com").oidc_subject == ""
    assert not events("user.subject_learned")


def test_a_first_sso_login_is_not_taken_into_an_account_that_only_proposed_the_address(
    client, db, sso
):
    # Anyone with an account can add an address at /accounts/email/ without opening the
    # link mailed to it: that must not make the address's owner sign in to their account.
    mallory = make_user("mallory@example.com", email_verified=True)
    token, _ = tokens.create_api_token(mallory, "watching")
    other = Client()
    other.force_login(mallory)
    other.post("/accounts/email/", {"action_add": "", "email": "victor@example.com"})
    assert EmailAddress.objects.filter(user=mallory, email="victor@example.com").exists()
    sub = new_subject()
    set_idp_user(sso, sub, {"email": "victor@example.com", "email_verified": True})

    response = sign_in_with_sso(client, sso, sub)

    assert response.status_code == 403
    assert "never verified" in response.content.decode()
    assert not SocialAccount.objects.filter(uid=sub).exists()
    assert not client.get("/").wsgi_request.user.is_authenticated
    [failed] = events("auth.login_failed")
    assert failed.details["reason"] == "unverified_account_email"
    assert failed.details["identifier"] == "victor@example.com"


def test_an_account_with_another_verified_address_is_not_taken_by_an_unverified_match(
    client, db, sso
):
    # Signed up with someone else's address, and holding an address of one's own from
    # which the password can be reset: the owner's SSO login would be reachable again.
    mallory = make_user("victor@example.com")
    EmailAddress.objects.create(user=mallory, email="victor@example.com", primary=True)
    EmailAddress.objects.create(user=mallory, email="mallory@example.com", verified=True)
    sub = new_subject()
    set_idp_user(sso, sub, {"email": "victor@example.com", "email_verified": True})

    response = sign_in_with_sso(client, sso, sub)

    assert response.status_code == 403
    assert not SocialAccount.objects.filter(uid=sub).exists()
    mallory.refresh_from_db()
    assert mallory.check_password(PASSWORD)
    assert events("auth.login_failed")[0].details["reason"] == "unverified_account_email"


def test_an_sso_login_into_an_account_never_verified_revokes_its_api_tokens(client, personas, sso):
    # Whoever set the password may not own the address: allauth disables the password, and
    # the tokens made with it go too.
    requester = personas.requester
    token, _ = tokens.create_api_token(requester, "made with the password")
    sub = new_subject()
    set_idp_user(sso, sub, {"email": requester.email, "email_verified": True})

    assert sign_in_with_sso(client, sso, sub).status_code == 302

    assert client.get("/").wsgi_request.user == requester
    token.refresh_from_db()
    assert token.revoked_at is not None
    [revoked] = events("api_token.revoked")
    assert revoked.details["prefix"] == token.prefix
    assert "never verified" in revoked.details["reason"]
