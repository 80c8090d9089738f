"""The Content-Security-Policy in a real browser: the pages, the admin and the API docs
work with no inline script or style, and Chromium reports no violation.

The page fixture fails any browser test whose page broke the policy; this file visits
the pages no other browser test does, and shows the check itself can fail."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from access.models import Grant
from access.tests.test_api import make_grant, make_resource
from audit.models import AuditEvent
from aws_integration.tests.test_admin_app import make_aws_app
from tests.fixtures import CSP_MARK, PASSWORD

pytestmark = pytest.mark.browser


def sign_in(page, email: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)


@pytest.fixture
def admin_page(page, personas):
    sign_in(page, personas.admin.email)
    return page


def test_the_portal_pages_break_no_policy(admin_page, personas):
    role = make_resource(personas.app, "deploy", arn="arn:aws:iam::111111111111:role/deploy")
    grant: Grant = make_grant(personas.admin, role)
    event = AuditEvent.objects.order_by("-id").first()
    urls = [
        reverse("home"),
        reverse("catalogue"),
        reverse("resource-detail", args=[role.pk]),
        reverse("my-access"),
        reverse("my-requests"),
        reverse("approvals"),
        reverse("request-new") + f"?resource={role.pk}",
        reverse("api-token-list"),
        reverse("audit:event-list"),
        reverse("audit:event-detail", args=[event.pk]),
    ]
    for url in urls:
        response = admin_page.goto(url)
        assert response.status == 200, url
        # The stylesheet applies: the header has the portal's background, not none.
        background = admin_page.locator("header.top").evaluate(
            "e => getComputedStyle(e).backgroundColor"
        )
        assert background == "rgb(246, 248, 250)", url
    assert grant.pk  # the resource page listed a holder
    # allauth's own account pages (the email page may be turned off: then only a 404).
    assert admin_page.goto(reverse("account_change_password")).status == 200
    admin_page.goto(reverse("account_email"))
    assert admin_page.csp_violations == []


def test_the_login_page_is_styled_without_inline_css(page, personas):
    page.goto("/accounts/login/")
    # entrance.css draws the card around the form.
    radius = page.locator("main").evaluate("e => getComputedStyle(e).borderTopLeftRadius")
    assert radius == "10px"
    sign_in(page, personas.requester.email)
    assert page.csp_violations == []


def test_the_admin_pages_break_no_policy(admin_page):
    app = make_aws_app()
    for url in [
        reverse("admin:index"),
        reverse("admin:access_user_changelist"),
        reverse("admin:access_grant_changelist"),
        reverse("admin:audit_auditevent_changelist"),
        reverse("admin:aws_integration_awsapp_changelist"),
        reverse("admin:aws_integration_awsapp_change", args=[app.pk]),
    ]:
        response = admin_page.goto(url)
        assert response.status == 200, url
    # admin.css from the app's static files styles the setup sections.
    clear = admin_page.locator("#external-id").evaluate("e => getComputedStyle(e).clear")
    assert clear == "both"
    assert admin_page.csp_violations == []


def test_the_api_docs_work_under_the_policy(page, personas):
    sign_in(page, personas.outsider.email)
    response = page.goto("/api/docs/")

    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Portcullis API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    expect(page.get_by_text("/api/v1/resources/", exact=True).first).to_be_visible()
    assert page.csp_violations == []


def test_an_inline_script_would_be_refused_and_reported(page, personas):
    # The check above can fail: a script written into the page is refused, and said so.
    sign_in(page, personas.outsider.email)
    with page.expect_console_message(lambda m: CSP_MARK in m.text) as refused:
        page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.ranInline = true";
                document.body.appendChild(script);
            }"""
        )
    assert "script-src" in refused.value.text
    assert page.evaluate("window.ranInline === undefined")
    assert page.csp_violations == [refused.value.text]
    page.csp_violations.clear()  # expected here; the fixture would fail the test


def test_the_user_import_and_export_pages_break_no_policy(admin_page):
    admin_page.goto(reverse("admin:access_user_import"))
    expect(admin_page.locator("input[type=file]")).to_be_visible()
    # django-import-export's export page has an inline handler and inline styles, allowed
    # there by their hashes (config/csp.py): the "Select all" toggle works.
    admin_page.goto(reverse("admin:access_user_export"))
    toggle = admin_page.locator("input.select-toggle")
    expect(toggle).to_be_checked()
    toggle.uncheck()
    expect(admin_page.locator("input[type=checkbox][name$=email]").first).not_to_be_checked()
    assert admin_page.csp_violations == []
