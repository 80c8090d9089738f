"""The rule in words says what actually happens: a stage whose kind of reviewer names
nobody (a resource without owners, a requester without a manager) goes to the admins, and
the pages and the API say so instead of naming reviewers who do not exist."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from access.choices import ReviewerKind, StageMode
from access.models import AccessLevel, RequestRule
from access.services import requests as svc

pytestmark = pytest.mark.django_db

NO_OWNERS = "Stage 1: the resource has no owners, so an admin approves."
OWNERS = "Stage 1: any one of the resource&#x27;s owners approves."


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def level(personas) -> AccessLevel:
    return AccessLevel.objects.create(
        resource=personas.resource, remote_id="arn:aws:sso:::permissionSet/ps-1", name="ReadOnly"
    )


@pytest.fixture
def unowned(personas, level) -> AccessLevel:
    personas.resource.owners.all().delete()
    return level


def test_a_resource_without_owners_says_the_admins_approve(personas, unowned):
    page = logged_in(personas.requester).get(
        reverse("resource-detail", args=[personas.resource.pk])
    )
    text = page.content.decode()
    assert NO_OWNERS in text
    assert "owners approves" not in text
    form = logged_in(personas.requester).get(
        reverse("request-new") + f"?resource={personas.resource.pk}"
    )
    assert NO_OWNERS in form.content.decode()
    api = logged_in(personas.requester).get(f"/api/v1/resources/{personas.resource.pk}/")
    assert api.json()["request_rule"]["description"][0] == NO_OWNERS


def test_a_resource_with_owners_names_them(personas, level):
    page = logged_in(personas.requester).get(
        reverse("resource-detail", args=[personas.resource.pk])
    )
    assert OWNERS in page.content.decode()


def test_a_requester_without_a_manager_is_told_the_admins_decide_that_stage(personas, level):
    made = RequestRule.objects.create(resource=personas.resource)
    made.stages.create(order=1, reviewers=ReviewerKind.MANAGER, mode=StageMode.ANY)
    made.stages.create(order=2, reviewers=ReviewerKind.OWNERS, mode=StageMode.ALL)
    rule = svc.rule_for(personas.resource, personas.outsider)

    assert rule.describe(personas.resource, personas.outsider)[:2] == [
        "Stage 1: the requester has no manager, so an admin approves.",
        "Stage 2: every one of the resource's owners approves.",
    ]
    assert rule.describe(personas.resource, personas.requester)[0] == (
        "Stage 1: the requester's manager approves."
    )
    # Without a resource and requester (the rules list), the kinds of reviewer.
    assert rule.describe()[0] == "Stage 1: the requester's manager approves."


def test_the_request_page_says_who_decides_a_request_on_an_unowned_resource(personas, unowned):
    (request,) = svc.submit_requests(
        requested_by=personas.requester,
        items=[svc.RequestItem(personas.resource.pk, unowned.pk, timedelta(hours=1))],
        reason="debug prod",
    )
    page = logged_in(personas.requester).get(reverse("request-detail", args=[request.pk]))
    assert NO_OWNERS in page.content.decode()


def test_a_resource_sync_marked_not_requestable_shows_no_rule_to_follow(personas, level):
    personas.resource.metadata = {"not_requestable": "the role is not tagged requestable."}
    personas.resource.save()
    client = logged_in(personas.requester)
    page = client.get(reverse("resource-detail", args=[personas.resource.pk])).content.decode()
    assert "the role is not tagged requestable." in page
    assert "How requests are judged" not in page
    form = client.get(reverse("request-new") + f"?resource={personas.resource.pk}")
    text = form.content.decode()
    assert "Cannot be requested: the role is not tagged requestable." in text
    assert 'name="level-0"' not in text
