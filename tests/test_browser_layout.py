"""The busiest pages at 1280 px wide, seeded as a real installation looks: several
resources whose levels share a name, grants failing with long AWS errors, an AWS app with
failed validations, sync runs and sync issues. None needs horizontal scrolling; each
page's screenshot is saved to a temporary directory (PORTCULLIS_SCREENSHOTS names
another) for a person to look at."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from access.choices import GrantSource, GrantStatus, PropagationStatus, ResourceType
from access.models import AccessLevel, Grant, Resource
from access.services import requests as request_service
from aws_integration import setup_checks
from aws_integration.choices import Severity, SyncStatus, ValidationStatus
from aws_integration.models import AwsApp, SyncRun
from aws_integration.tests.test_admin_app import make_aws_app
from tests.fixtures import PASSWORD, Personas

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1280, 900
# What AWS says when an assignment keeps failing: long, unbroken words included.
LONG_ERROR = (
    "An error occurred (AccessDeniedException) when calling the CreateAccountAssignment "
    "operation: User: arn:aws:sts::123456789012:assumed-role/portcullis-ingester/"
    "portcullis-grant-engine-session-0123456789abcdef is not authorized to perform: "
    "sso:CreateAccountAssignment on resource: arn:aws:sso:::permissionSet/"
    "ssoins-72233aa0d8e8d6d7/ps-0f1e2d3c4b5a69788796a5b4c3d2e1f0 because no identity-based "
    "policy allows the sso:CreateAccountAssignment action"
)


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    # allauth's rate-limit counters live in the cache, shared with the live server.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    chosen = os.environ.get("PORTCULLIS_SCREENSHOTS")
    folder = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="portcullis-layout-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def seed(personas: Personas) -> AwsApp:
    """Several resources of each kind, four of them with a level named "Member", grants in
    every state with long errors, a pending request for the approver, and an AWS app with
    failed validations, sync runs and sync issues."""
    groups = [
        Resource.objects.create(
            app=personas.app,
            type=ResourceType.IDC_GROUP,
            name=f"{team}-engineers-with-a-long-descriptive-group-name",
            remote_id=f"group-{team}",
        )
        for team in ("platform", "payments", "data", "security")
    ]
    members = [
        AccessLevel.objects.create(resource=group, name="Member", remote_id="member")
        for group in groups
    ]
    for group in groups:
        group.owners.create(user=personas.approver)
    accounts = [
        Resource.objects.create(
            app=personas.app,
            type=ResourceType.ACCOUNT,
            name=f"workload-{env}-eu-central-1-{n}",
            remote_id=f"22223333444{n}",
            account_id=f"22223333444{n}",
        )
        for n, env in enumerate(("production", "staging", "sandbox"))
    ]
    levels = [
        AccessLevel.objects.create(resource=account, name=name, remote_id=f"ps-{n}-{name}")
        for n, account in enumerate([personas.resource, *accounts])
        for name in ("AdministratorAccess", "ReadOnlyAccess", "PowerUserAccessWithLongName")
    ]
    now = timezone.now()
    statuses = [
        (GrantStatus.FAILED, PropagationStatus.FAILED, LONG_ERROR),
        (GrantStatus.PENDING, PropagationStatus.WAITING_FOR_SUBJECT, ""),
        (GrantStatus.ACTIVE, PropagationStatus.APPLIED, ""),
        (GrantStatus.ACTIVE, PropagationStatus.IN_PROGRESS, LONG_ERROR),
        (GrantStatus.REVOKED, PropagationStatus.REMOVED, ""),
    ]
    for n, level in enumerate(levels + members):
        status, propagation, error = statuses[n % len(statuses)]
        Grant.objects.create(
            user=personas.requester if n % 2 else personas.manager,
            resource=level.resource,
            access_level=level,
            source=GrantSource.REQUEST if n % 3 else GrantSource.ADMIN,
            status=status,
            propagation_status=propagation,
            expires_at=now + timedelta(hours=8 + n) if n % 4 else None,
            last_error=error,
        )
    level = personas.resource.access_levels.first()
    assert level is not None
    request_service.submit_requests(
        requested_by=personas.requester,
        items=[request_service.RequestItem(personas.resource.pk, level.pk, timedelta(hours=8))],
        reason="Investigating the failed deployment of the payments service in production",
    )

    app = make_aws_app()
    for n, (key, name) in enumerate(
        [
            ("management.assume_role", "Assume the ingester role in the management account"),
            ("management.organizations", "Read the organization's accounts and OUs"),
            ("identity_center.read", "Read Identity Center permission sets, users and groups"),
            ("identity_center.instance", "Identity Center instance and identity store match"),
            ("member_accounts", "Assume the ingester role in every member account"),
            ("sqs.receive", "Receive CloudTrail events from the SQS queue"),
            ("tasks.schedules", "The schedules of sync, validations and the grant sweep"),
        ]
    ):
        failed = n % 3 == 1
        app.validations.create(
            key=key,
            name=name,
            why=setup_checks.WHY[key],
            status=ValidationStatus.FAILED if failed else ValidationStatus.PASSED,
            severity=Severity.CRITICAL if n < 4 else Severity.MEDIUM,
            details={
                "missing_actions": ["organizations:ListAccounts", "sso:ListPermissionSets"],
                "errors": [
                    {"action": "sts:AssumeRole", "code": "AccessDenied", "message": LONG_ERROR}
                ],
            }
            if failed
            else {},
        )
    for outcome in (SyncStatus.SUCCEEDED, SyncStatus.PARTIAL, SyncStatus.FAILED):
        SyncRun.objects.create(app=app, status=outcome, message=LONG_ERROR, finished_at=now)
    for n in range(4):
        app.sync_issues.create(
            scope=f"222233334444/eu-central-1/ec2-with-a-long-scope-name-{n}",
            code="AccessDenied",
            message=LONG_ERROR,
        )
    return app


def log_in(browser: Any, live_server: Any, email: str) -> Any:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": WIDTH, "height": HEIGHT}
    )
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)
    return page


# The page's width, and the boxes that scroll sideways inside it (the admin's changelist
# puts its table in one: the page fits while columns hide). A document in a <pre> may.
MEASURE = """() => {
  const doc = document.documentElement;
  const hidden = [...document.querySelectorAll("body *")].filter((e) => {
    const overflow = getComputedStyle(e).overflowX;
    return (overflow === "auto" || overflow === "scroll") && e.tagName !== "PRE"
      && e.tagName !== "TEXTAREA" && e.scrollWidth > e.clientWidth + 1;
  }).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}: ${e.scrollWidth} px in ${e.clientWidth} px`);
  return [doc.scrollWidth, doc.clientWidth, hidden];
}"""


def assert_fits(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    scroll_width, client_width, hidden = page.evaluate(MEASURE)
    assert scroll_width <= client_width, f"{name}: {scroll_width} px wide in {client_width} px"
    assert not hidden, f"{name} hides content behind horizontal scroll: {hidden}"


@pytest.fixture
def seeded(personas: Personas, monkeypatch: pytest.MonkeyPatch) -> AwsApp:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    return seed(personas)


@pytest.mark.parametrize(
    ("persona", "url", "shows"),
    [
        pytest.param(
            "requester",
            "my-access",
            "AccessDeniedException",
            id="my-access",
        ),
        pytest.param("requester", "catalogue", "workload-production", id="catalogue"),
        pytest.param(
            "approver", "approvals", "Investigating the failed deployment", id="approvals"
        ),
    ],
)
def test_the_portal_pages_fit_1280_px(
    browser, live_server, personas, seeded, screenshots, persona, url, shows
):
    page = log_in(browser, live_server, getattr(personas, persona).email)
    page.goto(reverse(url))
    expect(page.locator("main")).to_contain_text(shows)
    assert_fits(page, screenshots, url)
    page.context.close()


def admin_log_in(page: Any, email: str) -> Any:
    """The ``page`` fixture's tab (it checks the CSP) at 1280 px, signed in."""
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)
    return page


def test_the_admin_grants_list_fits_1280_px(page, personas, seeded, screenshots):
    admin_log_in(page, personas.admin.email)
    page.goto(reverse("admin:access_grant_changelist"))
    expect(page.locator("#result_list")).to_contain_text("AccessDeniedException")
    expect(page.locator("#result_list")).to_contain_text("Waiting for the user's first sign-in")
    assert_fits(page, screenshots, "admin-grants")
    # With the navigation sidebar closed as well as open.
    page.locator("#toggle-nav-sidebar").click()
    expect(page.locator("#nav-sidebar")).to_be_hidden()
    assert_fits(page, screenshots, "admin-grants-sidebar-closed")


def test_the_aws_app_page_fits_1280_px_with_validations_first(page, personas, seeded, screenshots):
    admin_log_in(page, personas.admin.email)
    page.goto(reverse("admin:aws_integration_awsapp_change", args=[seeded.pk]))
    expect(page.locator("#validations")).to_contain_text("Missing")
    assert_fits(page, screenshots, "admin-aws-app")
    # The table of contents leads to each section, the documents open one by one.
    contents = page.get_by_role("navigation", name="On this page")
    contents.get_by_role("link", name="Set up AWS").click()
    expect(page).to_have_url(re.compile("#setup-documents$"))
    trust = page.locator("#document-trust-policy")
    expect(trust.locator("pre")).to_be_hidden()
    trust.locator("summary h3").click()
    expect(trust.locator("pre")).to_be_visible()
    assert_fits(page, screenshots, "admin-aws-app-document-open")


def choose(page: Any, field: str, search: str, option: str) -> None:
    """Picks ``option`` in the admin's autocomplete for ``field`` (select2)."""
    page.locator(f'[aria-labelledby="select2-id_{field}-container"]').click()
    page.locator(".select2-search__field").fill(search)
    page.locator(".select2-results__option", has_text=option).click()


def test_an_admin_adds_a_grant_choosing_the_resource_then_one_of_its_levels(
    page, personas, seeded, screenshots
):
    admin_log_in(page, personas.admin.email)
    page.goto(reverse("admin:access_grant_changelist"))
    page.get_by_role("link", name="Add grant").click()
    expect(page.get_by_label("Access level")).to_have_count(0)
    choose(page, "resource", "payments", "payments-engineers")
    page.get_by_role("button", name="Next: choose the access level").click()

    level = page.get_by_label("Access level")
    # One "Member", that of the chosen resource, labelled with it; nothing else.
    expect(level.locator("option")).to_have_text(
        ["---------", "payments-engineers-with-a-long-descriptive-group-name · Member"]
    )
    assert_fits(page, screenshots, "admin-add-grant")
    level.select_option(label="payments-engineers-with-a-long-descriptive-group-name · Member")
    choose(page, "user", "otto", "otto.outsider@example.com")
    page.get_by_label("Reason").fill("Covering the payments on-call")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    grant = Grant.objects.get(user=personas.outsider)
    assert grant.resource.name.startswith("payments-engineers")
    assert grant.access_level.resource_id == grant.resource_id
    assert grant.source == GrantSource.ADMIN
