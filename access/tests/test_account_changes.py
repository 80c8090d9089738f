"""People's own password and email changes (allauth's pages): each is recorded in the audit
log, an address becomes the account's only once verified, and a password change or reset
revokes the person's API tokens."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.cache import cache

from access import tokens
from access.models import ApiToken
from audit.models import AuditEvent
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rate_limits_left_over():
    # allauth counts confirmation mails per address in the cache, which outlives a test.
    cache.clear()
    yield
    cache.clear()


NEW_PASSWORD = "a-new-and-longer-passphrase"
CONFIRM_LINK = re.compile(r"/accounts/confirm-email/([-:\w]+)/")
RESET_LINK = re.compile(r"(/accounts/password/reset/key/[^\s]+/)")


def actions(user) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_id=str(user.pk), action__startswith="user.")
        .order_by("pk")
        .values_list("action", flat=True)
    )


# Email addresses ------------------------------------------------------------------------------
def test_a_new_address_is_only_proposed_until_the_link_mailed_to_it_is_opened(personas, client):
    rob = personas.requester
    client.force_login(rob)

    client.post("/accounts/email/", {"action_add": "", "email": "rob@elsewhere.example"})

    rob.refresh_from_db()
    assert rob.email == "rob.requester@example.com"
    pending = EmailAddress.objects.get(user=rob, email="rob@elsewhere.example")
    assert not pending.verified
    assert mail.outbox[-1].to == ["rob@elsewhere.example"]
    added = AuditEvent.objects.get(action="user.email_added")
    assert added.actor == rob
    assert added.details == {"email": "rob@elsewhere.example", "verified": False}


def test_an_unverified_address_cannot_be_made_the_accounts_address(personas, client):
    rob = personas.requester
    client.force_login(rob)
    client.post("/accounts/email/", {"action_add": "", "email": "rob@elsewhere.example"})

    response = client.post(
        "/accounts/email/", {"action_primary": "", "email": "rob@elsewhere.example"}, follow=True
    )

    rob.refresh_from_db()
    assert rob.email == "rob.requester@example.com"
    assert "is not verified yet" in response.content.decode()
    assert not AuditEvent.objects.filter(action="user.email_changed").exists()


def test_a_verified_address_can_become_the_accounts_address_and_the_change_is_recorded(
    personas, client
):
    rob = personas.requester
    client.force_login(rob)
    client.post("/accounts/email/", {"action_add": "", "email": "rob@elsewhere.example"})
    (key,) = CONFIRM_LINK.findall(str(mail.outbox[-1].body))
    client.post(f"/accounts/confirm-email/{key}/")
    assert EmailAddress.objects.get(email="rob@elsewhere.example").verified

    client.post("/accounts/email/", {"action_primary": "", "email": "rob@elsewhere.example"})

    rob.refresh_from_db()
    assert rob.email == "rob@elsewhere.example"
    changed = AuditEvent.objects.get(action="user.email_changed")
    assert changed.actor == rob
    assert changed.details["before"] == "rob.requester@example.com"
    assert changed.details["after"] == "rob@elsewhere.example"
    confirmed = AuditEvent.objects.get(action="user.email_confirmed")
    assert confirmed.details["email"] == "rob@elsewhere.example"
    assert actions(rob) == ["user.email_added", "user.email_confirmed", "user.email_changed"]


def test_withdrawing_a_proposed_address_is_recorded(personas, client):
    rob = personas.requester
    client.force_login(rob)
    client.post("/accounts/email/", {"action_add": "", "email": "rob@elsewhere.example"})

    client.post("/accounts/email/", {"action_remove": "", "email": "rob@elsewhere.example"})

    assert not EmailAddress.objects.filter(email="rob@elsewhere.example").exists()
    removed = AuditEvent.objects.get(action="user.email_removed")
    assert removed.details["email"] == "rob@elsewhere.example"


# Passwords -------------------------------------------------------------------------------------
def test_changing_ones_password_is_recorded_and_revokes_ones_api_tokens(personas, client):
    rob = personas.requester
    token, _ = tokens.create_api_token(rob, "laptop")
    client.force_login(rob)

    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    rob.refresh_from_db()
    assert rob.check_password(NEW_PASSWORD)
    event = AuditEvent.objects.get(action="user.password_changed")
    assert event.actor == rob
    assert event.details["how"] == "changed"
    token.refresh_from_db()
    assert token.revoked_at is not None
    revoked = AuditEvent.objects.get(action="api_token.revoked")
    assert revoked.details["reason"] == "The user's password was changed."


def test_setting_a_first_password_is_recorded(personas, client):
    rob = personas.requester
    rob.set_unusable_password()
    rob.save()
    client.force_login(rob)

    client.post("/accounts/password/set/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    rob.refresh_from_db()
    assert rob.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.get(action="user.password_set").actor == rob


def test_resetting_a_forgotten_password_is_recorded_and_revokes_the_api_tokens(personas, client):
    rob = personas.requester
    token, _ = tokens.create_api_token(rob, "laptop")

    client.post("/accounts/password/reset/", {"email": rob.email})
    (link,) = RESET_LINK.findall(str(mail.outbox[-1].body))
    form = client.get(link)  # allauth moves the key into the session and redirects
    assert form.status_code == 302
    client.post(form["Location"], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    rob.refresh_from_db()
    assert rob.check_password(NEW_PASSWORD)
    event = AuditEvent.objects.get(action="user.password_reset")
    assert event.target_id == str(rob.pk)
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
