"""The login page in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from tests.fixtures import PASSWORD, make_user

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _empty_cache():
    # allauth's rate-limit counters live in the cache, shared with the live server.
    cache.clear()
    yield
    cache.clear()


def test_a_user_logs_in_through_the_login_page_and_sees_the_home_page(page, live_server):
    make_user("bea.browser@example.com", first_name="Bea", last_name="Browser")

    page.goto("/accounts/login/")
    expect(page).to_have_title("Sign in · Portcullis")
    page.get_by_label("Email").fill("bea.browser@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Bea Browser")
    expect(page.get_by_test_id("current-user")).to_have_text("bea.browser@example.com")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_a_wrong_password_keeps_the_user_on_the_login_page_with_a_message(page, live_server):
    make_user("bea.browser@example.com")

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    page.get_by_label("Email").fill("bea.browser@example.com")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_test_id("login-error")).to_contain_text(
        "The email address and/or password you specified are not correct."
    )
    expect(page.get_by_test_id("current-user")).to_have_count(0)
