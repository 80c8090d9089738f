"""Giving up access and denying a request ask first, in a real browser: a page says what
happens, backing out changes nothing, and only that page's own button records it (a
denial with the comment its rule requires)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from access.choices import GrantSource, GrantStatus, RequestStatus
from access.models import AccessLevel, AccessRequest, Grant, Resource
from access.services.grants import create_grant
from access.services.requests import RequestItem, submit_requests
from access.tests.factories import AccessLevelFactory
from audit.models import AuditEvent
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    # allauth's rate-limit counters live in the cache, shared with the live server.
    cache.clear()
    yield
    cache.clear()


def level_of(resource: Resource, name: str) -> AccessLevel:
    # factory_boy types a factory's call as the factory, not the model it makes.
    return AccessLevelFactory(resource=resource, name=name)  # type: ignore[return-value]


def sign_in(page, email: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)


def test_giving_up_access_asks_first_and_keep_it_changes_nothing(page, personas):
    rob, prod = personas.requester, personas.resource
    grant = create_grant(
        user=rob,
        resource=prod,
        access_level=level_of(prod, "ReadOnly"),
        expires_at=None,
        source=GrantSource.ADMIN,
        actor=personas.admin,
    )
    sign_in(page, rob.email)
    events = AuditEvent.objects.count()

    page.goto("/access/")
    row = page.get_by_test_id("current-grants").locator("tr", has_text="prod")
    row.get_by_role("link", name="Give up…").click()
    expect(page.get_by_role("heading")).to_have_text("Give up your access to prod?")
    expect(page.get_by_test_id("revoke-consequence")).to_have_text(
        "Portcullis removes this access from AWS at once; to have it again you must ask again."
    )
    page.get_by_role("link", name="Keep it").click()
    expect(page).to_have_url(re.compile(r"/access/$"))
    expect(row.get_by_test_id("grant-status")).to_have_text("Pending")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING and grant.revoked_at is None
    assert AuditEvent.objects.count() == events

    row.get_by_role("link", name="Give up…").click()
    page.get_by_label("Reason (optional)").fill("Done with the migration")
    page.get_by_role("button", name="Give up access").click()

    expect(page).to_have_url(re.compile(r"/access/$"))
    expect(page.locator(".messages")).to_contain_text("You gave up prod (ReadOnly)")
    # Listed while AWS loses it (nothing applies it here), with nothing left to give up.
    expect(row.get_by_test_id("grant-status")).to_have_text(re.compile("Revoking|Revoked"))
    expect(row.get_by_role("link", name="Give up…")).to_have_count(0)
    grant.refresh_from_db()
    assert grant.status in (GrantStatus.REVOKING, GrantStatus.REVOKED)
    assert grant.revoked_by == rob and grant.revoke_reason == "Done with the migration"
    assert AuditEvent.objects.filter(
        action="grant.revoked", target_id=str(grant.pk), actor=rob
    ).exists()


def test_a_denial_asks_for_confirmation_and_a_comment(page, personas):
    prod = personas.resource
    (request,) = submit_requests(
        requested_by=personas.requester,
        items=[RequestItem(prod.pk, level_of(prod, "Admin").pk, timedelta(hours=1))],
        reason="Release night",
    )
    sign_in(page, personas.approver.email)

    page.goto(f"/requests/{request.pk}/")
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("heading")).to_have_text(f"Deny request #{request.pk}?")
    expect(page.get_by_test_id("deny-consequence")).to_contain_text(
        "Denying ends the request at once: nothing is granted"
    )
    deny = page.get_by_role("button", name=f"Deny request #{request.pk}")
    comment = page.get_by_label("Comment")

    # Without a comment the browser holds the form back (the field is required)...
    deny.click()
    assert comment.evaluate("e => e.validity.valueMissing")
    # ...and a comment of blanks, which it lets through, the portal refuses with the message.
    comment.fill("   ")
    deny.click()
    expect(page.get_by_test_id("form-errors")).to_have_text(
        "Say why you deny the request: the requester sees your comment and the audit log keeps it."
    )
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert not AuditEvent.objects.filter(action="request.denied").exists()

    page.get_by_label("Comment").fill("Use the staging account for this")
    page.get_by_role("button", name=f"Deny request #{request.pk}").click()

    expect(page.locator(".messages")).to_contain_text(f"You denied request #{request.pk}")
    request.refresh_from_db()
    assert request.status == RequestStatus.DENIED
    (denied,) = AuditEvent.objects.filter(action="request.denied", target_id=str(request.pk))
    assert denied.details["comment"] == "Use the staging account for this"
    assert not Grant.objects.filter(request=request).exists()
    assert AccessRequest.objects.get(pk=request.pk).approvals.get().comment == (
        "Use the staging account for this"
    )
