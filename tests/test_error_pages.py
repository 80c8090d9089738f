"""The 403, 404 and 500 pages, as production serves them (DEBUG off): in the portal's
layout, saying what happened and what to do; the favicon on every page."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied
from django.test import Client

from config.errors import refusal_reason

FAVICON = 'rel="icon" href="/static/portcullis/favicon.svg"'


@pytest.fixture(autouse=True)
def _production_mode(settings: Any) -> None:
    settings.DEBUG = False


def test_a_refusal_shows_the_portals_reason_in_the_layout(client, personas):
    client.force_login(personas.requester)

    refused = client.get("/admin/login/")

    assert refused.status_code == 403
    page = refused.content.decode()
    assert '<p class="refusal-reason" data-testid="refusal-reason">' in page
    assert "The admin site is for the Admin role." in page
    assert 'href="/catalogue/"' in page  # the portal's navigation
    assert "ask a Portcullis admin" in page
    assert FAVICON in page


def test_a_refusal_without_a_reason_shows_none(client, personas):
    client.force_login(personas.outsider)
    refused = client.get("/audit/")
    assert refused.status_code == 403
    assert "You don't have access to this page" in refused.content.decode()


def _raised_in(module: str, message: str) -> PermissionDenied:
    namespace: dict[str, Any] = {"__name__": module, "PermissionDenied": PermissionDenied}
    exec(f"def refuse():\n    raise PermissionDenied({message!r})", namespace)
    try:
        namespace["refuse"]()
    except PermissionDenied as exc:
        return exc
    raise AssertionError("not raised")


def test_only_the_portals_own_reasons_are_shown():
    assert refusal_reason(_raised_in("access.views.grants", "Ask the owner.")) == "Ask the owner."
    assert refusal_reason(_raised_in("somelibrary.internals", "token table t_42 locked")) == ""
    assert refusal_reason(PermissionDenied()) == ""
    assert refusal_reason(None) == ""


def test_a_missing_page_says_so_in_the_layout(client, personas):
    client.force_login(personas.requester)

    missing = client.get("/no-such-page/")

    assert missing.status_code == 404
    page = missing.content.decode()
    assert "<h1>Page not found</h1>" in page
    assert "<code>/no-such-page/</code>" in page
    assert 'href="/requests/"' in page and 'href="/catalogue/"' in page
    assert FAVICON in page


def test_a_missing_page_offers_the_login_to_anonymous_visitors(client, db):
    missing = client.get("/no-such-page/")
    assert missing.status_code == 404
    assert 'href="/accounts/login/"' in missing.content.decode()


@pytest.mark.urls("tests.error_urls")
def test_an_error_shows_the_portals_500_page_without_database_or_context_processors(
    monkeypatch,
):
    # No database (this test has no db fixture: any query fails) and a context processor
    # that would fail: the 500 page needs neither.
    def broken(request: Any) -> dict[str, Any]:
        raise RuntimeError("context processor failed")

    monkeypatch.setattr("access.context_processors.roles", broken)
    client = Client(raise_request_exception=False)

    failed = client.get("/fails/")

    assert failed.status_code == 500
    page = failed.content.decode()
    assert "Something went wrong on our side" in page
    assert "internal detail" not in page
    assert '<a class="brand" href="/">Portcullis</a>' in page
    assert FAVICON in page


def test_every_layout_links_the_favicon(client, personas):
    assert finders.find("portcullis/favicon.svg")
    assert FAVICON in client.get("/accounts/login/").content.decode()
    client.force_login(personas.admin)
    assert FAVICON in client.get("/").content.decode()
    assert FAVICON in client.get("/admin/").content.decode()


def test_a_refused_form_says_why_and_what_to_do(personas):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.requester)

    refused = client.post("/accounts/logout/")

    assert refused.status_code == 403
    page = refused.content.decode()
    assert "<h1>This form could not be sent</h1>" in page
    assert "reload the page" in page
    assert 'href="/catalogue/"' in page and FAVICON in page


def test_opening_an_address_that_takes_a_form_says_so_in_the_layout(client, personas):
    """Opening /requests/<id>/decide/ (a form's POST) answered 405 with an empty body: the
    browser's blank error page. The API's 405 keeps its own JSON."""
    client.force_login(personas.requester)

    opened = client.get("/settings/tokens/new/")

    assert opened.status_code == 405
    assert opened["Allow"] == "POST"
    page = opened.content.decode()
    assert "This address is not a page to open" in page
    assert 'href="/catalogue/"' in page and FAVICON in page
    api = client.put("/api/v1/requests/")
    assert api.status_code == 405
    assert "PUT" in api.json()["detail"]


def test_a_search_for_a_nul_character_is_not_an_error_page(client, personas):
    client.force_login(personas.requester)
    assert client.get("/catalogue/", {"q": "pay\x00ments"}).status_code == 200
