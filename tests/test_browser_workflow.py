"""The whole workflow in a real browser: a requester asks for an Identity Center group in the
catalogue, its owner approves in the approvals queue, the requester sees the access on My
access, the stand-in AWS holds the membership, and once the grant expires it is gone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone
from playwright.sync_api import expect

from access.choices import GrantStatus, ResourceType
from access.models import Grant, Resource
from access.services.grants import expire_due_grants
from aws_integration.grants import base, register_drivers
from aws_integration.tests.sync_fixtures import (
    ADA_EMAIL,
    make_app,
    management,
    seeded_org,
    sync,
)
from tests.fixtures import PASSWORD, make_user

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    # allauth's rate-limit counters live in the cache, shared with the live server.
    cache.clear()
    yield
    cache.clear()


def members(org, group_id: str) -> list[str]:
    found = management("identitystore").list_group_memberships(
        IdentityStoreId=org.identity_store_id, GroupId=group_id
    )["GroupMemberships"]
    return [m["MemberId"]["UserId"] for m in found]


@pytest.fixture
def org(moto_server, settings):
    settings.AWS_ENDPOINT_URL = moto_server
    settings.AWS_MAX_ATTEMPTS = 2
    # Grants are applied when the approval commits, in the live server's thread.
    settings.TASKS_INLINE = True
    # AppConfig.ready registers the drivers; registering again is harmless and keeps this
    # test independent of start-up order.
    register_drivers()
    result = seeded_org()
    base.forget_sessions()
    return result


@pytest.fixture
def group(org, live_server) -> Iterator[Resource]:
    """An Identity Center group Ada is not in, synced from the stand-in and owned by Olga."""
    make_user(ADA_EMAIL.lower(), email_verified=True, first_name="Ada", last_name="Lovelace")
    owner = make_user("olga.owner@example.com", first_name="Olga", last_name="Owner")
    app = make_app(org, organization_management=False)
    run = sync(app)
    assert run.status == "succeeded", run.message
    ada_id = org.users[ADA_EMAIL]
    candidates = Resource.objects.filter(type=ResourceType.IDC_GROUP, deleted_at__isnull=True)
    resource = next(g for g in candidates if ada_id not in members(org, g.remote_id))
    resource.owners.create(user=owner)
    yield resource
    # Leave the shared organization as seeded, even when the test failed half-way.
    store = management("identitystore")
    for found in store.list_group_memberships(
        IdentityStoreId=org.identity_store_id, GroupId=resource.remote_id
    )["GroupMemberships"]:
        if found["MemberId"]["UserId"] == ada_id:
            store.delete_group_membership(
                IdentityStoreId=org.identity_store_id, MembershipId=found["MembershipId"]
            )


def log_in(browser, live_server, email: str):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)
    return context, page


def test_a_request_is_approved_applied_in_aws_and_removed_when_it_expires(
    browser, live_server, monkeypatch, org, group
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ada_id = org.users[ADA_EMAIL]

    # The requester finds the group in the catalogue and asks for 8 hours.
    ada_context, ada = log_in(browser, live_server, ADA_EMAIL.lower())
    ada.get_by_role("link", name="Catalogue").click()
    ada.get_by_role("textbox", name="Search").fill(group.name)
    ada.get_by_role("button", name="Search").click()
    ada.get_by_label(f"Select {group.name}").check()
    ada.get_by_role("button", name="Request access to the selected resources").click()
    expect(ada.get_by_label(f"Access level for {group.name}")).to_have_value(
        str(group.access_levels.get(remote_id="member").pk)
    )
    expect(ada.get_by_label(f"Duration for {group.name}")).to_have_value(str(8 * 3600))
    ada.get_by_label("Reason").fill("On-call this week")
    ada.get_by_role("button", name="Send request").click()
    expect(ada).to_have_url(re.compile(r"/requests/$"))
    expect(ada.locator(".messages")).to_contain_text("1 request sent for approval")
    expect(ada.get_by_test_id("my-requests")).to_contain_text("Pending approval")

    # The owner approves it in the approvals queue.
    olga_context, olga = log_in(browser, live_server, "olga.owner@example.com")
    olga.get_by_test_id("nav-approvals").click()
    expect(olga.get_by_test_id("nav-approvals")).to_have_text("Approvals 1")
    row = olga.get_by_test_id("queue-mine").locator("tr", has_text=ADA_EMAIL.lower())
    row.get_by_label(re.compile(r"Comment on request")).fill("Enjoy the pager")
    row.get_by_role("button", name="Approve").click()
    expect(olga.locator(".messages")).to_contain_text("the access is being granted")
    expect(olga.get_by_text("Nothing waits for your decision.")).to_be_visible()

    # The requester holds it, and so does AWS.
    ada.get_by_role("link", name="My access").click()
    # (Ada's membership of the group she was seeded in shows too, as observed access.)
    held = ada.get_by_test_id("current-grants").locator("tr", has_text=group.name)
    expect(held.get_by_test_id("grant-status")).to_have_text("Active")
    expect(held).to_contain_text("Applied in AWS")
    assert ada_id in members(org, group.remote_id)

    # Nine hours later the grant has expired and the membership is gone from AWS.
    grant = Grant.objects.get(user__email=ADA_EMAIL.lower(), resource=group)
    with time_machine.travel(timezone.now() + timedelta(hours=9), tick=False):
        assert expire_due_grants() == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert ada_id not in members(org, group.remote_id)
    ada.reload()
    expect(ada.get_by_test_id("recent-grants").locator("tr", has_text=group.name)).to_contain_text(
        "Expired"
    )
    expect(ada.get_by_test_id("current-grants").locator("tr", has_text=group.name)).to_have_count(0)

    ada_context.close()
    olga_context.close()
