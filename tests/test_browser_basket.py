"""The catalogue's basket in a real browser: a group ticked on one search and a role ticked
on another are requested together, in one submission."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from access.choices import RequestStatus, ResourceType
from access.models import AccessLevel, AccessRequest, Resource
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.browser


def make(personas, name: str, type_: str, level: str) -> Resource:
    resource = Resource.objects.create(
        app=personas.app, type=type_, remote_id=name, name=name, account_id="111111111111"
    )
    AccessLevel.objects.create(resource=resource, remote_id=level, name=level)
    resource.owners.create(user=personas.approver)
    return resource


def test_a_group_and_a_role_from_two_searches_are_requested_in_one_submission(page, personas):
    group = make(personas, "oncall-responders", ResourceType.IDC_GROUP, "member")
    role = make(personas, "DeployRole", ResourceType.IAM_ROLE, "assume")
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(personas.requester.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(personas.requester.email)

    page.goto(reverse("catalogue"))
    page.get_by_role("textbox", name="Search").fill("oncall")
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_label("Select oncall-responders").check()

    # A new search: the group is no longer listed, and still selected.
    page.get_by_role("textbox", name="Search").fill("deploy")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_label("Select oncall-responders")).to_have_count(0)
    expect(page.get_by_test_id("basket-count")).to_have_text("1 selected")
    expect(page.get_by_test_id("basket")).to_contain_text("oncall-responders")
    page.get_by_label("Select DeployRole").check()

    # Searching once more shows both in the basket, the role ticked where it is listed.
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_test_id("basket-count")).to_have_text("2 selected")
    expect(page.get_by_label("Select DeployRole")).to_be_checked()

    page.get_by_role("button", name="Request them").click()
    expect(page.get_by_label("Access level for oncall-responders")).to_be_visible()
    expect(page.get_by_label("Access level for DeployRole")).to_be_visible()
    page.get_by_label("Reason").fill("Incident follow-up")
    page.get_by_role("button", name="Send request").click()
    expect(page).to_have_url(re.compile(r"/requests/$"))
    expect(page.locator(".messages")).to_contain_text("2 requests sent for approval")

    made = AccessRequest.objects.filter(user=personas.requester, status=RequestStatus.PENDING)
    assert sorted(made.values_list("resource_id", flat=True)) == sorted([group.pk, role.pk])
