"""The AWS settings in the admin: one row, a write-only OIDC client secret, the issuer
checked before anything is saved, and the External ID regenerated only on confirmation."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.urls import reverse

from access.tests.test_admin import form_errors
from audit.models import AuditEvent
from aws_integration import services
from aws_integration.models import AwsApp, AwsSettings
from aws_integration.tests.test_admin_app import NON_ADMINS, make_aws_app

pytestmark = pytest.mark.django_db

SECRET = "a-very-secret-client-secret"


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


@pytest.fixture
def aws_settings() -> AwsSettings:
    return services.get_aws_settings()


def settings_url(obj: AwsSettings) -> str:
    return reverse("admin:aws_integration_awssettings_change", args=[obj.pk])


def regenerate_url() -> str:
    return reverse("admin:aws_integration_awssettings_regenerate_external_id")


def form(issuer: str, **overrides: str) -> dict[str, str]:
    data = {
        "oidc_issuer_url": issuer,
        "oidc_client_id": "portcullis",
        "client_secret": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def raw_secret(obj: AwsSettings) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT oidc_client_secret FROM {AwsSettings._meta.db_table} WHERE id = %s",
            [obj.pk],
        )
        return cursor.fetchone()[0]


# The singleton -----------------------------------------------------------------------------
def test_the_list_leads_to_the_one_settings_page_which_cannot_be_deleted_or_added(
    admin_client,
):
    response = admin_client.get(reverse("admin:aws_integration_awssettings_changelist"))
    obj = AwsSettings.objects.get()
    assert response.status_code == 302
    assert response["Location"] == settings_url(obj)
    assert admin_client.get(reverse("admin:aws_integration_awssettings_add")).status_code == 302
    assert AwsSettings.objects.count() == 1
    delete = reverse("admin:aws_integration_awssettings_delete", args=[obj.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert AwsSettings.objects.count() == 1


def test_the_settings_page_shows_the_external_id_and_the_callback_url(
    admin_client, aws_settings, settings
):
    settings.SITE_URL = "https://portcullis.example.com"
    page = admin_client.get(settings_url(aws_settings)).content.decode()
    assert (
        f'<code id="external-id-value" class="portcullis-copyable">{aws_settings.external_id}</code>'
        in page
    )
    assert (
        '<code id="callback-url-value" class="portcullis-copyable">'
        "https://portcullis.example.com/callback/oidc</code>"
    ) in page
    assert 'data-copy="external-id-value"' in page and 'data-copy="callback-url-value"' in page
    assert regenerate_url() in page


# Saving the OIDC settings ------------------------------------------------------------------
def test_saving_checks_the_issuer_stores_the_secret_encrypted_and_audits_it_redacted(
    admin_client, aws_settings, idp, personas
):
    response = admin_client.post(settings_url(aws_settings), form(idp, client_secret=SECRET))
    assert response.status_code == 302, form_errors(response)
    saved = AwsSettings.objects.get()
    assert saved.oidc_issuer_url == idp
    assert saved.oidc_client_id == "portcullis"
    assert saved.oidc_client_secret == SECRET
    assert saved.oidc_checked_at is not None
    raw = raw_secret(saved)
    assert raw != SECRET and SECRET not in raw

    (event,) = AuditEvent.objects.filter(action="aws.settings.updated")
    assert event.actor_id == personas.admin.pk
    assert event.details["after"]["oidc_issuer_url"] == idp
    assert event.details["after"]["oidc_client_secret"] == "[redacted]"
    assert "oidc_client_secret" in event.details["changed"]
    assert SECRET not in json.dumps(event.details)

    followed = admin_client.get(response["Location"], follow=True)
    assert f"The discovery document at {idp}/.well-known/openid-configuration is valid" in (
        followed.content.decode()
    )


def test_the_secret_is_never_rendered_back(admin_client, aws_settings, personas):
    services.update_aws_settings(aws_settings, {"oidc_client_secret": SECRET}, personas.admin)
    page = admin_client.get(settings_url(aws_settings)).content.decode()
    assert SECRET not in page
    assert raw_secret(aws_settings) not in page
    assert '<input type="password" name="client_secret"' in page
    assert "A secret is stored; it is never shown." in page


def test_a_blank_secret_keeps_the_stored_one_and_clear_removes_it(
    admin_client, aws_settings, idp, personas
):
    services.update_aws_settings(aws_settings, {"oidc_client_secret": SECRET}, personas.admin)
    response = admin_client.post(settings_url(aws_settings), form(idp))
    assert response.status_code == 302, form_errors(response)
    assert AwsSettings.objects.get().oidc_client_secret == SECRET

    response = admin_client.post(settings_url(aws_settings), form(idp, clear_client_secret="on"))
    assert response.status_code == 302, form_errors(response)
    assert AwsSettings.objects.get().oidc_client_secret == ""
    event = AuditEvent.objects.filter(action="aws.settings.updated").latest("id")
    assert event.details["before"]["oidc_client_secret"] == "[redacted]"
    assert event.details["after"]["oidc_client_secret"] == ""


def test_typing_a_secret_and_clearing_it_at_once_is_refused(admin_client, aws_settings, idp):
    response = admin_client.post(
        settings_url(aws_settings), form(idp, client_secret=SECRET, clear_client_secret="on")
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["clear_client_secret"] == ["Either type a new secret or clear it, not both."]
    assert AwsSettings.objects.get().oidc_client_secret == ""


def test_a_bad_issuer_is_a_form_error_naming_the_problem_and_nothing_is_saved(
    admin_client, aws_settings, idp
):
    before_events = AuditEvent.objects.count()
    response = admin_client.post(
        settings_url(aws_settings), form(f"{idp}/wrong-tenant", client_secret=SECRET)
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["oidc_issuer_url"] == [
        f"The discovery document at {idp}/wrong-tenant/.well-known/openid-configuration "
        "answered HTTP 404, not 200: is the issuer URL right?"
    ]
    saved = AwsSettings.objects.get()
    assert saved.oidc_issuer_url == "" and saved.oidc_client_secret == ""
    assert saved.oidc_checked_at is None
    assert AuditEvent.objects.count() == before_events
    assert SECRET not in response.content.decode()  # not even echoed in the refused form


def test_an_issuer_needs_a_client_id(admin_client, aws_settings, idp):
    response = admin_client.post(settings_url(aws_settings), form(idp, oidc_client_id=""))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["oidc_client_id"] == ["The client ID is needed with an issuer URL."]


# Regenerating the External ID ----------------------------------------------------------------
def test_regenerating_asks_for_confirmation_first(admin_client, aws_settings):
    response = admin_client.get(regenerate_url())
    assert response.status_code == 200
    page = response.content.decode()
    assert "cannot assume those roles" in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert AwsSettings.objects.get().external_id == aws_settings.external_id
    assert not AuditEvent.objects.filter(action="aws.external_id.regenerated").exists()


def test_the_confirmed_regeneration_replaces_the_id_and_is_audited(
    admin_client, aws_settings, personas
):
    app = make_aws_app()
    app_page = reverse("admin:aws_integration_awsapp_change", args=[app.pk])
    response = admin_client.post(regenerate_url(), {"next": app_page})
    assert response.status_code == 302
    assert response["Location"] == app_page
    new = AwsSettings.objects.get().external_id
    assert new != aws_settings.external_id
    (event,) = AuditEvent.objects.filter(action="aws.external_id.regenerated")
    assert event.actor_id == personas.admin.pk
    assert event.details["before"] == {"external_id": aws_settings.external_id[:15] + "…"}
    page = admin_client.get(app_page).content.decode()
    assert new in page and aws_settings.external_id not in page


def test_the_regeneration_goes_back_only_to_this_site(admin_client, aws_settings):
    response = admin_client.post(regenerate_url(), {"next": "https://evil.example.com/"})
    assert response["Location"] == settings_url(aws_settings)


def test_the_regeneration_needs_the_csrf_token(client, personas, aws_settings):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(personas.admin)
    assert strict.post(regenerate_url()).status_code == 403
    assert AwsSettings.objects.get().external_id == aws_settings.external_id


# Who may ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("persona", NON_ADMINS)
def test_the_settings_pages_are_refused_to_everyone_else(client, personas, aws_settings, persona):
    client.force_login(getattr(personas, persona))
    for url in (
        reverse("admin:aws_integration_awssettings_changelist"),
        settings_url(aws_settings),
        regenerate_url(),
    ):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
    for url in (regenerate_url(), settings_url(aws_settings)):
        response = client.post(url, form("https://evil.example.com", client_secret="x"))
        assert response.status_code == 302, url
    after = AwsSettings.objects.get()
    assert after.external_id == aws_settings.external_id
    assert after.oidc_issuer_url == ""
    assert not AwsApp.objects.exists()
