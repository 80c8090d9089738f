"""One AWS account assignment is one grant, in a real browser: a requester asks for an
Identity Center role ("PermissionSet @ account"), its owner approves it on the approvals
page, the grant engine applies it in the stand-in AWS, a full sync then reads that
assignment back, and My access lists one current grant for the account and permission
set, with no "Observed in AWS" twin of it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from access.choices import GrantSource, GrantStatus, PropagationStatus, ResourceType
from access.models import Grant, User
from aws_integration.grants import register_drivers
from aws_integration.models import AwsApp
from aws_integration.tests import test_grants_identity_center as idc_tests
from aws_integration.tests.sync_fixtures import ADA_EMAIL, make_app, sync
from aws_integration.tests.test_grants_identity_center import assigned_users, resource
from demo import seed
from tests.fixtures import PASSWORD, make_user

pytestmark = pytest.mark.browser

# The seeded organization, with Ada put back as seeded (no account assignment) after the test.
org = idc_tests.org


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    # allauth's rate-limit counters live in the cache, shared with the live server.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def engine_inline(settings) -> None:
    # The grant engine's work runs when the approval commits, in the live server's thread.
    settings.TASKS_INLINE = True
    register_drivers()


@pytest.fixture
def ada(org, live_server) -> User:
    return make_user(ADA_EMAIL.lower(), email_verified=True, first_name="Ada")


@pytest.fixture
def app(org, ada) -> AwsApp:
    found = make_app(org, organization_management=False)
    run = sync(found)
    assert run.status == "succeeded", run.message
    return found


def sign_in(browser, live_server, email: str):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)
    return context, page


def test_a_granted_identity_center_role_is_one_grant_on_my_access_after_a_full_sync(
    browser, live_server, monkeypatch, engine_inline, org: seed.SeedResult, ada, app
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    account_id = org.accounts[0].account_id
    permission_set = org.permission_sets["ReadOnlyAccess"]
    role = resource(app, ResourceType.IDC_ROLE, remote_id=f"{account_id}/{permission_set}")
    olga = make_user("olga.owner@example.com", first_name="Olga")
    role.owners.create(user=olga)
    user_id = org.users[ADA_EMAIL]
    assert user_id not in assigned_users(org, account_id, permission_set)

    # Ada asks for the role from the catalogue.
    ada_context, ada_page = sign_in(browser, live_server, ada.email)
    ada_page.get_by_role("link", name="Catalogue").click()
    ada_page.get_by_role("textbox", name="Search").fill(role.name)
    ada_page.get_by_role("button", name="Search").click()
    ada_page.get_by_label(f"Select {role.name}").check()
    ada_page.get_by_role("button", name="Request access to the selected resources").click()
    ada_page.get_by_label("Reason").fill("Reading the production dashboards")
    ada_page.get_by_role("button", name="Send request").click()
    expect(ada_page.locator(".messages")).to_contain_text("1 request sent for approval")

    # Olga, its owner, approves; the engine applies it in the stand-in AWS.
    olga_context, olga_page = sign_in(browser, live_server, olga.email)
    olga_page.get_by_test_id("nav-approvals").click()
    row = olga_page.get_by_test_id("queue-mine").locator("tr", has_text=ada.email)
    row.get_by_role("button", name="Approve").click()
    expect(olga_page.locator(".messages")).to_contain_text("the access is being granted")
    grant = Grant.objects.get(user=ada, resource=role)
    assert (grant.status, grant.propagation_status) == (
        GrantStatus.ACTIVE,
        PropagationStatus.APPLIED,
    ), grant.last_error
    assert assigned_users(org, account_id, permission_set).count(user_id) == 1

    # A full sync reads that assignment back from AWS: it is the grant's, not observed access.
    run = sync(app)
    assert run.status == "succeeded", run.message
    current = [
        g
        for g in Grant.objects.filter(user=ada).current().select_related("resource", "access_level")
        if g.resource.account_id == account_id
        and permission_set
        in (g.access_level.remote_id, g.resource.metadata.get("permission_set_arn"))
    ]
    assert [(g.pk, g.source) for g in current] == [(grant.pk, GrantSource.REQUEST)]

    ada_page.get_by_role("link", name="My access").click()
    rows = ada_page.get_by_test_id("current-grants").locator("tbody tr")
    held = rows.filter(has_text=account_id).filter(has_text=re.compile("ReadOnlyAccess"))
    expect(held).to_have_count(1)
    expect(held).to_contain_text(f"Request #{grant.request_id}")
    expect(held.get_by_test_id("grant-status")).to_have_text("Active")
    # (Ada's seeded Engineering membership is listed as observed: another resource.)
    expect(rows.filter(has_text=account_id).filter(has_text="Observed")).to_have_count(0)

    ada_context.close()
    olga_context.close()
