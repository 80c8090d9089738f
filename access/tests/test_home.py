"""The home page (the user's current access) and the health check."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from access.choices import GrantSource, GrantStatus, ResourceType
from access.models import AccessLevel, Grant, Resource


def make_grant(user, resource_name: str, personas, **fields) -> Grant:
    resource, _ = Resource.objects.get_or_create(
        app=personas.app,
        type=ResourceType.IAM_ROLE,
        remote_id=resource_name,
        defaults={"name": resource_name},
    )
    level, _ = AccessLevel.objects.get_or_create(
        resource=resource, remote_id="assume", defaults={"name": "assume"}
    )
    fields.setdefault("status", GrantStatus.ACTIVE)
    return Grant.objects.create(
        user=user, resource=resource, access_level=level, source=GrantSource.ADMIN, **fields
    )


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_home_page_lists_my_current_grants_and_not_others(personas):
    make_grant(personas.requester, "MyRole", personas)
    make_grant(personas.requester, "MyPendingRole", personas, status=GrantStatus.PENDING)
    make_grant(
        personas.requester,
        "MyOldRole",
        personas,
        status=GrantStatus.REVOKED,
        revoked_at=timezone.now(),
    )
    make_grant(personas.outsider, "TheirRole", personas)

    response = logged_in(personas.requester).get(reverse("home"))

    assert response.status_code == 200
    body = response.content.decode()
    assert "MyRole" in body
    assert "MyPendingRole" in body
    assert "MyOldRole" not in body
    assert "TheirRole" not in body


def test_the_home_page_lists_soonest_expiry_first_and_open_ended_grants_last(personas):
    now = timezone.now()
    make_grant(personas.requester, "Forever", personas)
    make_grant(personas.requester, "Later", personas, expires_at=now + timedelta(days=3))
    make_grant(personas.requester, "Soon", personas, expires_at=now + timedelta(hours=1))

    body = logged_in(personas.requester).get(reverse("home")).content.decode()

    assert body.index("Soon") < body.index("Later") < body.index("Forever")
    assert "Until revoked" in body


def test_the_home_page_says_so_when_i_hold_nothing(personas):
    make_grant(personas.outsider, "TheirRole", personas)

    body = logged_in(personas.requester).get(reverse("home")).content.decode()

    assert "You hold no access yet." in body


def test_the_home_page_costs_the_same_queries_for_5_and_50_grants(
    personas, django_assert_max_num_queries
):
    client = logged_in(personas.requester)
    for rows in (5, 50):
        while Grant.objects.count() < rows:
            make_grant(personas.requester, f"Role{Grant.objects.count()}", personas)
        # session, user, roles and approvals count (navigation), grants with resource and
        # access level
        with django_assert_max_num_queries(5):
            response = client.get(reverse("home"))
        assert response.content.decode().count("<tr>") == rows + 1


def test_the_home_page_sends_anonymous_visitors_to_login(db):
    response = Client().get(reverse("home"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_healthz_answers_ok_without_login(db):
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
