"""The request form says what the person already holds or waits for on each resource."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from access.choices import GrantSource, GrantStatus
from access.models import AccessLevel, Grant
from access.services import requests as svc

pytestmark = pytest.mark.django_db


def form(user, resource, **extra) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("request-new"), {"resource": resource.pk, **extra})
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def levels(personas) -> tuple[AccessLevel, AccessLevel]:
    return (
        AccessLevel.objects.create(resource=personas.resource, remote_id="ro", name="ReadOnly"),
        AccessLevel.objects.create(resource=personas.resource, remote_id="adm", name="Admin"),
    )


def test_nothing_held_says_nothing(personas, levels):
    page = form(personas.requester, personas.resource)
    assert 'data-testid="item-held-0"' not in page
    assert 'data-testid="item-waiting-0"' not in page


def test_a_held_grant_and_a_pending_request_are_said(personas, levels):
    read_only, admin = levels
    grant = Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=read_only,
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
        starts_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=3),
    )
    (pending,) = svc.submit_requests(
        requested_by=personas.requester,
        items=[svc.RequestItem(personas.resource.pk, admin.pk, timedelta(hours=1))],
        reason="debug prod",
    )

    page = form(personas.requester, personas.resource)

    assert 'data-testid="item-held-0"' in page
    assert "You already hold ReadOnly here, until" in page
    assert reverse("grant-extend", args=[grant.pk]) in page
    assert 'data-testid="item-waiting-0"' in page
    assert "You have a pending request for Admin here" in page
    assert reverse("request-detail", args=[pending.pk]) in page
    # Someone else's form says nothing of it.
    assert "already hold" not in form(personas.outsider, personas.resource)


def test_ended_grants_are_not_said(personas, levels):
    Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=levels[0],
        source=GrantSource.ADMIN,
        status=GrantStatus.REVOKED,
        starts_at=timezone.now() - timedelta(hours=2),
        expires_at=timezone.now() - timedelta(hours=1),
    )
    assert "already hold" not in form(personas.requester, personas.resource)


def test_a_refused_on_behalf_submission_shows_nothing_of_the_person_named(personas, levels):
    """Someone who may not ask for another person names them anyway: the refused form is
    shown for the signed-in user, with nothing of what the person named holds."""
    read_only, _ = levels
    Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=read_only,
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
        starts_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=3),
    )
    client = Client()
    client.force_login(personas.outsider)
    response = client.post(
        reverse("request-new"),
        {
            "resource": personas.resource.pk,
            "level-0": read_only.pk,
            "duration-0": "3600",
            "reason": "probe",
            "user": personas.requester.pk,
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert personas.requester.email not in page
    assert 'data-testid="item-held-0"' not in page
