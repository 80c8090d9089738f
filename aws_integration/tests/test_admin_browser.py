"""The app page's bits of script in a real browser: copy buttons, and the sync runs table
that follows a running sync without reloading the form."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.urls import reverse
from playwright.sync_api import expect

from access.permissions import ADMIN_ROLE
from aws_integration import services
from aws_integration.choices import SyncStatus
from aws_integration.models import SyncRun
from aws_integration.tests.test_admin_app import make_aws_app
from tests.fixtures import PASSWORD, make_user

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _empty_cache():
    # allauth's rate-limit counters live in the cache, shared with the live server.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def admin_page(page, live_server):
    make_user("ada.admin@example.com", roles=(ADMIN_ROLE,))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill("ada.admin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text("ada.admin@example.com")
    return page


def test_the_copy_buttons_copy_the_external_id_and_the_trust_policy(admin_page, settings):
    settings.PORTCULLIS_AWS_PRINCIPAL_ARN = "arn:aws:iam::999999999999:role/portcullis-web"
    app = make_aws_app()
    external_id = services.get_aws_settings().external_id
    admin_page.goto(reverse("admin:aws_integration_awsapp_change", args=[app.pk]))

    button = admin_page.locator('[data-copy="external-id-value"]')
    button.click()
    expect(button).to_have_text("Copied")
    assert admin_page.evaluate("navigator.clipboard.readText()") == external_id

    admin_page.locator('[data-copy="trust-policy-text"]').click()
    copied = json.loads(admin_page.evaluate("navigator.clipboard.readText()"))
    statement = copied["Statement"][0]
    assert statement["Condition"]["StringEquals"]["sts:ExternalId"] == external_id
    assert statement["Principal"]["AWS"] == settings.PORTCULLIS_AWS_PRINCIPAL_ARN


def test_the_runs_table_follows_a_running_sync_and_keeps_what_was_typed(admin_page):
    app = make_aws_app()
    run = SyncRun.objects.create(
        app=app, status=SyncStatus.RUNNING, progress_done=1, progress_total=4
    )
    admin_page.goto(reverse("admin:aws_integration_awsapp_change", args=[app.pk]))
    expect(admin_page.locator("#sync-runs-body")).to_have_attribute("data-active", "true")
    admin_page.locator("#id_name").fill("Typed but not saved")

    SyncRun.objects.filter(pk=run.pk).update(status=SyncStatus.SUCCEEDED, progress_done=4)
    body = admin_page.locator("#sync-runs-body")
    expect(body).to_have_attribute("data-active", "false", timeout=10_000)
    expect(body).to_contain_text("Succeeded")
    expect(admin_page.locator("#id_name")).to_have_value("Typed but not saved")
