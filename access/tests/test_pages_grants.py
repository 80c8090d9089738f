"""My access: giving up a grant, revoking it as an owner, asking to extend it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access.choices import (
    ExtensionPolicy,
    GrantSource,
    GrantStatus,
    PropagationStatus,
    RequestKind,
    RequestStatus,
)
from access.models import AccessLevel, AccessRequest, Assignment, Grant, RequestRule
from access.services import grants as grant_service
from access.services import requests as request_service
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

CONFIRM = {"confirm": "yes"}  # the confirmation page's button


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def grant(personas):
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="ReadOnly")
    return Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=level,
        source=GrantSource.REQUEST,
        status=GrantStatus.ACTIVE,
        expires_at=timezone.now() + timedelta(hours=4),
    )


def test_my_access_shows_current_and_recent_grants_with_their_state_in_aws(personas, grant):
    assignment = Assignment.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=grant.access_level,
        last_error="AccessDenied: the role cannot be assumed",
    )
    Grant.objects.filter(pk=grant.pk).update(assignment=assignment)
    ended = Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=grant.access_level,
        source=GrantSource.ADMIN,
        status=GrantStatus.REVOKED,
        revoked_at=timezone.now(),
        revoke_reason="Expired",
    )
    theirs = Grant.objects.create(
        user=personas.outsider,
        resource=personas.resource,
        access_level=grant.access_level,
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
    )
    body = logged_in(personas.requester).get(reverse("my-access")).content.decode()
    current = body.split('data-testid="current-grants"')[1].split("</table>")[0]
    recent = body.split('data-testid="recent-grants"')[1].split("</table>")[0]
    assert f'data-grant-id="{grant.pk}"' in current
    assert "AccessDenied: the role cannot be assumed" in current
    assert reverse("grant-extend", args=[grant.pk]) in current
    assert f'data-grant-id="{ended.pk}"' in recent and "Expired" in recent
    assert f'data-grant-id="{theirs.pk}"' not in body


def test_my_access_costs_the_same_queries_for_many_grants(
    personas, grant, django_assert_max_num_queries
):
    for index in range(30):
        Grant.objects.create(
            user=personas.requester,
            resource=personas.resource,
            access_level=grant.access_level,
            source=GrantSource.ADMIN,
            status=GrantStatus.ACTIVE if index % 2 else GrantStatus.REVOKED,
            revoked_at=None if index % 2 else timezone.now(),
        )
    client = logged_in(personas.requester)
    with django_assert_max_num_queries(8):
        assert client.get(reverse("my-access")).status_code == 200


def test_the_holder_gives_up_without_a_reason(personas, grant):
    response = logged_in(personas.requester).post(reverse("grant-revoke", args=[grant.pk]), CONFIRM)
    assert response["Location"] == reverse("my-access")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING
    assert grant.revoke_reason == "Given up by the holder"
    event = AuditEvent.objects.get(action="grant.revoked", target_id=str(grant.pk))
    assert event.actor_id == personas.requester.pk
    assert event.details["reason"] == "Given up by the holder"


def test_giving_up_twice_says_it_had_ended(personas, grant):
    client = logged_in(personas.requester)
    client.post(reverse("grant-revoke", args=[grant.pk]), CONFIRM)
    response = client.post(reverse("grant-revoke", args=[grant.pk]), CONFIRM, follow=True)
    assert "already ended" in response.content.decode()
    assert AuditEvent.objects.filter(action="grant.revoked").count() == 1


def test_an_admin_must_give_a_reason(personas, grant):
    client = logged_in(personas.admin)
    client.post(reverse("grant-revoke", args=[grant.pk]), {"reason": "  ", **CONFIRM})
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    client.post(reverse("grant-revoke", args=[grant.pk]), {"reason": "audit finding", **CONFIRM})
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING
    assert AuditEvent.objects.get(action="grant.revoked").details["reason"] == "audit finding"


def test_giving_up_asks_first_and_says_what_happens(personas, grant):
    client = logged_in(personas.requester)
    url = reverse("grant-revoke", args=[grant.pk])
    # My access links to the page; the page, and a POST without its confirm, end nothing.
    assert url in client.get(reverse("my-access")).content.decode()
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 200
        page = response.content.decode()
        assert 'data-testid="revoke-consequence"' in page
        assert 'name="confirm" value="yes"' in page
        assert 'data-testid="revoke-observed"' not in page
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    assert not AuditEvent.objects.filter(action="grant.revoked").exists()


def test_giving_up_access_found_in_aws_says_aws_loses_it(personas, grant):
    Grant.objects.filter(pk=grant.pk).update(source=GrantSource.OBSERVED)
    page = logged_in(personas.requester).get(reverse("grant-revoke", args=[grant.pk]))
    assert 'data-testid="revoke-observed"' in page.content.decode()
    assert "removes it from AWS all the same" in page.content.decode()


def test_the_confirmation_page_is_refused_to_whoever_may_not_revoke(personas, grant):
    url = reverse("grant-revoke", args=[grant.pk])
    assert logged_in(personas.manager).get(url).status_code == 403
    assert logged_in(personas.outsider).get(url).status_code == 404


def test_a_manager_who_may_see_the_grant_may_not_revoke_it(personas, grant):
    response = logged_in(personas.manager).post(
        reverse("grant-revoke", args=[grant.pk]), {"reason": "no", **CONFIRM}
    )
    assert response.status_code == 403
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE


def test_someone_elses_grant_is_not_found(personas, grant):
    client = logged_in(personas.outsider)
    assert (
        client.post(
            reverse("grant-revoke", args=[grant.pk]), {"reason": "x", **CONFIRM}
        ).status_code
        == 404
    )
    assert client.get(reverse("grant-extend", args=[grant.pk])).status_code == 404
    assert (
        client.post(
            reverse("grant-extend", args=[grant.pk]), {"duration": 3600, "reason": "x"}
        ).status_code
        == 404
    )
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    assert not AccessRequest.objects.exists()


def test_the_grant_pages_send_anonymous_people_to_login(personas, grant):
    client = Client()
    for response in (
        client.get(reverse("my-access")),
        client.post(reverse("grant-revoke", args=[grant.pk]), CONFIRM),
        client.get(reverse("grant-revoke", args=[grant.pk])),
        client.get(reverse("grant-extend", args=[grant.pk])),
    ):
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE


def test_the_holder_asks_for_an_extension(personas, grant):
    client = logged_in(personas.requester)
    form = client.get(reverse("grant-extend", args=[grant.pk])).content.decode()
    assert '<option value="28800" selected>8 hours</option>' in form
    assert "14 days" not in form
    response = client.post(
        reverse("grant-extend", args=[grant.pk]), {"duration": 86400, "reason": "still on it"}
    )
    extension = AccessRequest.objects.get()
    assert response["Location"] == reverse("request-detail", args=[extension.pk])
    assert (extension.kind, extension.grant, extension.duration, extension.status) == (
        RequestKind.EXTENSION,
        grant,
        timedelta(days=1),
        RequestStatus.PENDING,
    )
    assert AuditEvent.objects.filter(
        action="request.extension_requested", target_id=str(extension.pk)
    ).exists()


def test_an_extension_longer_than_the_rule_allows_is_refused(personas, grant):
    response = logged_in(personas.requester).post(
        reverse("grant-extend", args=[grant.pk]), {"duration": 30 * 86400, "reason": "x"}
    )
    assert response.status_code == 400
    assert "the rule allows no longer" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_an_extension_the_rule_refuses_is_explained(personas, grant):
    rule = RequestRule.objects.create(
        resource=personas.resource, extension_policy=ExtensionPolicy.NOT_ALLOWED
    )
    rule.stages.create(order=1)
    response = logged_in(personas.requester).post(
        reverse("grant-extend", args=[grant.pk]), {"duration": 3600, "reason": "x"}
    )
    assert response.status_code == 400
    assert "cannot be extended" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_an_auto_approved_extension_moves_the_expiry(personas, grant):
    rule = RequestRule.objects.create(
        resource=personas.resource, extension_policy=ExtensionPolicy.AUTO_APPROVE
    )
    rule.stages.create(order=1)
    before = grant.expires_at
    logged_in(personas.requester).post(
        reverse("grant-extend", args=[grant.pk]), {"duration": 3600, "reason": "x"}
    )
    grant.refresh_from_db()
    assert grant.expires_at == before + timedelta(hours=1)
    assert AuditEvent.objects.filter(action="grant.extended", target_id=str(grant.pk)).exists()


def test_an_owner_who_is_not_the_holder_cannot_extend_through_another_door(personas, grant):
    # The auditor may read every grant but asks for nobody.
    response = logged_in(personas.auditor).post(
        reverse("grant-extend", args=[grant.pk]), {"duration": 3600, "reason": "x"}
    )
    assert response.status_code == 403
    assert not AccessRequest.objects.exists()


def test_access_whose_apply_failed_offers_only_giving_up_and_refuses_an_extension(personas, grant):
    error = (
        "The IAM role Gone no longer exists in account 111111111111, so access to it cannot "
        "be granted."
    )
    Grant.objects.filter(pk=grant.pk).update(
        status=GrantStatus.PENDING, propagation_status=PropagationStatus.FAILED, last_error=error
    )
    grant.refresh_from_db()
    client = logged_in(personas.requester)

    body = client.get(reverse("my-access")).content.decode()
    current = body.split('data-testid="current-grants"')[1].split("</table>")[0]
    assert error in current
    assert reverse("grant-extend", args=[grant.pk]) not in current
    assert reverse("grant-revoke", args=[grant.pk]) in current

    # Every door refuses it with the same words: the page, the API and the service.
    page = client.get(reverse("grant-extend", args=[grant.pk]), follow=True)
    assert "never granted in AWS" in page.content.decode()
    posted = client.post(
        reverse("grant-extend", args=[grant.pk]), {"duration": 3600, "reason": "x"}
    )
    assert posted["Location"] == reverse("my-access")
    api = APIClient()
    api.force_authenticate(personas.requester)
    response = api.post(
        f"/api/v1/grants/{grant.pk}/extend/",
        {"duration_seconds": 3600, "reason": "x"},
        format="json",
    )
    assert response.status_code == 400
    assert "never granted in AWS" in " ".join(response.json()["non_field_errors"])
    with pytest.raises(grant_service.GrantError, match="never granted in AWS"):
        grant_service.extend_grant(grant, by=timedelta(hours=1), actor=personas.admin)
    assert not AccessRequest.objects.exists()
    grant.refresh_from_db()
    assert not AuditEvent.objects.filter(action="grant.extended").exists()


def test_the_extend_page_offers_only_durations_the_rule_still_allows(personas, grant):
    """The default rule: at most 7 days from now. With 3 days left, 4 more is the most."""
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(days=3))
    page = logged_in(personas.requester).get(reverse("grant-extend", args=[grant.pk]))
    text = page.content.decode()
    assert f'value="{3 * 86400}"' in text
    assert f'value="{7 * 86400}"' not in text

    Grant.objects.filter(pk=grant.pk).update(
        expires_at=timezone.now() + timedelta(days=7) - timedelta(minutes=30)
    )
    again = logged_in(personas.requester).get(reverse("grant-extend", args=[grant.pk]))
    assert "it cannot be extended now" in again.content.decode()
    assert 'data-testid="extend-form"' not in again.content.decode()


def test_the_most_an_extension_may_add_is_said_to_the_minute(personas, grant):
    Grant.objects.filter(pk=grant.pk).update(
        expires_at=timezone.now() + timedelta(days=3, seconds=37)
    )
    grant.refresh_from_db()
    with pytest.raises(request_service.RequestInvalid) as refused:
        request_service.request_extension(
            grant, requested_by=personas.requester, duration=timedelta(days=7), reason="x"
        )
    assert "so it can be extended by at most 3 days 23 hours 59 minutes." in str(refused.value)
