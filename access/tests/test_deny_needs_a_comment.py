"""A denial says why, unless the request's rule says a reviewer may deny without: the
service refuses it (pages and API alike), the page asks for the comment on its
confirmation, and the API answers 400 naming the field."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from access.choices import RequestStatus
from access.models import AccessLevel, RequestRule
from access.services import requests as svc
from access.tests.test_api import bearer
from access.tests.test_api_workflow import REQUESTS

pytestmark = pytest.mark.django_db


@pytest.fixture
def level(personas) -> AccessLevel:
    return AccessLevel.objects.create(
        resource=personas.resource, remote_id="arn:aws:sso:::permissionSet/ps-1", name="ReadOnly"
    )


def ask(personas, level):
    return svc.submit_requests(
        requested_by=personas.requester,
        items=[svc.RequestItem(personas.resource.pk, level.pk, timedelta(hours=8))],
        reason="debug prod",
    )[0]


def test_the_service_refuses_a_denial_without_a_comment(personas, level):
    request = ask(personas, level)
    with pytest.raises(svc.CommentRequired, match="Say why you deny"):
        svc.decide(request, reviewer=personas.approver, approve=False, comment="  ")
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert not request.approvals.exists()
    svc.decide(request, reviewer=personas.approver, approve=False, comment="use staging")
    request.refresh_from_db()
    assert request.status == RequestStatus.DENIED


def test_a_rule_may_let_reviewers_deny_without_a_comment(personas, level):
    made = RequestRule.objects.create(resource=personas.resource, require_deny_comment=False)
    made.stages.create(order=1, reviewers="owners", mode="any")
    request = ask(personas, level)
    assert (
        "A reviewer may deny without saying why."
        in svc.rule_for(personas.resource, personas.requester).describe()
    )
    svc.decide(request, reviewer=personas.approver, approve=False)
    request.refresh_from_db()
    assert request.status == RequestStatus.DENIED


def test_the_confirmation_page_asks_for_the_comment(personas, level):
    request = ask(personas, level)
    client = Client()
    client.force_login(personas.approver)
    url = reverse("request-decide", args=[request.pk])
    response = client.post(url, {"decision": "deny", "comment": "", "confirm": "yes"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Say why you deny the request" in page
    assert 'id="deny-comment" name="comment" rows="3" cols="60" maxlength="2000" required' in page
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


def test_the_api_names_the_missing_comment(personas, level):
    request = ask(personas, level)
    response = bearer(personas.approver).post(f"{REQUESTS}{request.pk}/deny/", {}, format="json")
    assert response.status_code == 400
    assert "Say why you deny" in response.json()["comment"][0]
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
