"""The request form, my requests, the request page and the approvals queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from access.choices import (
    ExtensionPolicy,
    GrantSource,
    GrantStatus,
    RequestStatus,
    ReviewerKind,
    StageMode,
)
from access.models import (
    AccessLevel,
    AccessRequest,
    Grant,
    RequestRule,
    Resource,
    StageReviewer,
)
from access.services import requests as svc
from audit.models import AuditEvent
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

EIGHT_HOURS = str(8 * 3600)


@pytest.fixture
def level(personas):
    return AccessLevel.objects.create(
        resource=personas.resource, remote_id="arn:aws:sso:::permissionSet/ps-1", name="ReadOnly"
    )


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def ask(personas, level, *, user=None, reason="debug prod"):
    return svc.submit_requests(
        requested_by=user or personas.requester,
        items=[svc.RequestItem(personas.resource.pk, level.pk, timedelta(hours=8))],
        reason=reason,
    )[0]


# The request form -------------------------------------------------------------------------------
def test_the_form_offers_the_levels_and_the_rules_durations_with_the_default_chosen(
    personas, level
):
    response = logged_in(personas.requester).get(
        reverse("request-new"), {"resource": personas.resource.pk}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "ReadOnly" in body
    assert f'<option value="{EIGHT_HOURS}" selected>8 hours</option>' in body
    assert "7 days" in body and "14 days" not in body
    assert "Until revoked" not in body
    # The default rule in plain words.
    assert "any one of the resource&#x27;s owners approves" in body
    # A requester without reports is not offered "on behalf of".
    assert 'name="user"' not in body


def test_until_revoked_is_offered_only_when_the_rule_allows_it(personas, level):
    rule = RequestRule.objects.create(
        resource=personas.resource, allow_until_revoked=True, max_duration=None
    )
    rule.stages.create(order=1)
    body = (
        logged_in(personas.requester)
        .get(reverse("request-new"), {"resource": personas.resource.pk})
        .content.decode()
    )
    assert '<option value="until">Until revoked</option>' in body


def test_a_request_is_sent_and_audited(personas, level):
    client = logged_in(personas.requester)
    response = client.post(
        reverse("request-new"),
        {
            "resource": [personas.resource.pk],
            "level-0": level.pk,
            "duration-0": EIGHT_HOURS,
            "reason": "incident 42",
            "ticket": "INC-42",
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("my-requests")
    request = AccessRequest.objects.get()
    assert (request.user, request.duration, request.ticket) == (
        personas.requester,
        timedelta(hours=8),
        "INC-42",
    )
    assert AuditEvent.objects.filter(action="request.created", target_id=str(request.pk)).exists()
    page = client.get(response["Location"]).content.decode()
    assert "1 request sent for approval" in page
    assert "olga.owner@example.com" in page  # the reviewer it waits for


def test_several_resources_are_asked_for_at_once(personas, level):
    other = Resource.objects.create(
        app=personas.app, type="aws_iam_role", remote_id="r", name="Deploy"
    )
    assume = AccessLevel.objects.create(resource=other, remote_id="assume", name="assume")
    response = logged_in(personas.requester).post(
        reverse("request-new"),
        {
            "resource": [personas.resource.pk, other.pk],
            "level-0": level.pk,
            "duration-0": EIGHT_HOURS,
            "level-1": assume.pk,
            "duration-1": "3600",
            "reason": "release",
        },
    )
    assert response.status_code == 302
    assert set(AccessRequest.objects.values_list("resource_id", "duration")) == {
        (personas.resource.pk, timedelta(hours=8)),
        (other.pk, timedelta(hours=1)),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration-1": str(30 * 86400)}, "lasts at most 7 days; you asked for 30 days"),
        ({"duration-1": "until"}, "must have an end"),
        ({"duration-1": "forever"}, "Choose a duration from the list."),
        ({"level-1": "LEVEL_OF_OTHER"}, "Choose one of prod&#x27;s access levels."),
    ],
)
def test_bad_input_is_named_next_to_its_item_and_nothing_is_created(
    personas, level, change, message
):
    other = Resource.objects.create(
        app=personas.app, type="aws_iam_role", remote_id="r", name="Deploy"
    )
    assume = AccessLevel.objects.create(resource=other, remote_id="assume", name="assume")
    data = {
        "resource": [other.pk, personas.resource.pk],
        "level-0": assume.pk,
        "duration-0": "3600",
        "level-1": level.pk,
        "duration-1": EIGHT_HOURS,
        "reason": "release",
    }
    data |= {k: (assume.pk if v == "LEVEL_OF_OTHER" else v) for k, v in change.items()}
    response = logged_in(personas.requester).post(reverse("request-new"), data)
    assert response.status_code == 400
    body = response.content.decode()
    errors = body.split('data-testid="item-errors-1"')[1].split("</ul>")[0]
    assert message in errors
    assert 'data-testid="item-errors-0"' not in body
    assert not AccessRequest.objects.exists()
    # What was chosen is kept.
    assert "release" in body


def test_a_deleted_resource_cannot_be_requested(personas, level):
    Resource.objects.filter(pk=personas.resource.pk).update(
        deleted_at=personas.resource.last_seen_at
    )
    client = logged_in(personas.requester)
    shown = client.get(reverse("request-new"), {"resource": personas.resource.pk}).content.decode()
    assert "does not exist or cannot be requested" in shown
    response = client.post(
        reverse("request-new"),
        {
            "resource": [personas.resource.pk],
            "level-0": level.pk,
            "duration-0": EIGHT_HOURS,
            "reason": "x",
        },
    )
    assert response.status_code == 400
    assert "does not exist" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_a_missing_reason_is_refused_when_the_rule_requires_one(personas, level):
    response = logged_in(personas.requester).post(
        reverse("request-new"),
        {"resource": [personas.resource.pk], "level-0": level.pk, "duration-0": EIGHT_HOURS},
    )
    assert response.status_code == 400
    assert "Give a reason" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_a_manager_asks_on_behalf_of_a_report(personas, level):
    client = logged_in(personas.manager)
    form = client.get(reverse("request-new"), {"resource": personas.resource.pk}).content.decode()
    assert 'name="user"' in form and "rob.requester@example.com" in form
    assert "otto.outsider@example.com" not in form
    response = client.post(
        reverse("request-new"),
        {
            "resource": [personas.resource.pk],
            "level-0": level.pk,
            "duration-0": EIGHT_HOURS,
            "reason": "onboarding",
            "user": personas.requester.pk,
        },
    )
    assert response.status_code == 302
    request = AccessRequest.objects.get()
    assert (request.user, request.requested_by) == (personas.requester, personas.manager)
    event = AuditEvent.objects.get(action="request.created")
    assert event.details["requested_by"] == personas.manager.email


def test_on_behalf_of_someone_else_is_refused_to_a_plain_user(personas, level):
    response = logged_in(personas.requester).post(
        reverse("request-new"),
        {
            "resource": [personas.resource.pk],
            "level-0": level.pk,
            "duration-0": EIGHT_HOURS,
            "reason": "x",
            "user": personas.outsider.pk,
        },
    )
    assert response.status_code == 400
    assert "You cannot ask for access to prod for this person" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_the_request_form_tells_nobody_who_exists_or_who_left(personas, level):
    gone = make_user("gus.gone@example.com", is_active=False)
    client = logged_in(personas.requester)

    def refusal(user_id):
        response = client.post(
            reverse("request-new"),
            {
                "resource": [personas.resource.pk],
                "level-0": level.pk,
                "duration-0": EIGHT_HOURS,
                "reason": "x",
                "user": user_id,
            },
        )
        assert response.status_code == 400
        return [str(m) for m in response.context["rows"][0]["errors"]] + list(
            response.context["general_errors"]
        )

    answers = [refusal(pk) for pk in (personas.outsider.pk, gone.pk, 999999)]
    assert answers[0] == answers[1] == answers[2], answers
    assert "gus.gone" not in str(answers)
    assert not AccessRequest.objects.exists()


def test_the_request_form_sends_anonymous_people_to_login(personas, level):
    response = Client().post(reverse("request-new"), {"resource": [personas.resource.pk]})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# My requests and the request page ---------------------------------------------------------------
def test_my_requests_lists_mine_and_those_made_for_me_only(personas, level):
    mine = ask(personas, level)
    other_level = AccessLevel.objects.create(
        resource=personas.resource, remote_id="x", name="Admin"
    )
    for_me = svc.submit_requests(
        requested_by=personas.manager,
        user=personas.requester,
        items=[svc.RequestItem(personas.resource.pk, other_level.pk, timedelta(hours=1))],
        reason="x",
    )[0]
    theirs = ask(personas, level, user=personas.outsider)
    body = logged_in(personas.requester).get(reverse("my-requests")).content.decode()
    assert f'data-request-id="{mine.pk}"' in body
    assert f'data-request-id="{for_me.pk}"' in body and "asked by mia.manager@example.com" in body
    assert f'data-request-id="{theirs.pk}"' not in body


def test_my_requests_costs_the_same_queries_for_many_rows(
    personas, level, django_assert_max_num_queries
):
    for index in range(30):
        extra = AccessLevel.objects.create(
            resource=personas.resource, remote_id=f"l{index}", name=f"L{index}"
        )
        ask(personas, extra)
    client = logged_in(personas.requester)
    with django_assert_max_num_queries(8):
        assert client.get(reverse("my-requests")).status_code == 200


def test_someone_elses_request_is_not_found(personas, level):
    request = ask(personas, level)
    client = logged_in(personas.outsider)
    assert client.get(reverse("request-detail", args=[request.pk])).status_code == 404
    assert (
        client.post(
            reverse("request-decide", args=[request.pk]), {"decision": "approve"}
        ).status_code
        == 404
    )
    assert client.post(reverse("request-cancel", args=[request.pk])).status_code == 404
    assert AccessRequest.objects.get().status == RequestStatus.PENDING


def test_the_approver_approves_on_the_request_page(personas, level):
    request = ask(personas, level)
    client = logged_in(personas.approver)
    page = client.get(reverse("request-detail", args=[request.pk])).content.decode()
    assert "Approve" in page and "debug prod" in page
    response = client.post(
        reverse("request-decide", args=[request.pk]), {"decision": "approve", "comment": "go"}
    )
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    assert Grant.objects.filter(request=request).exists()
    event = AuditEvent.objects.get(action="request.approved", target_id=str(request.pk))
    assert event.actor_id == personas.approver.pk and event.details["comment"] == "go"


def test_the_approver_denies(personas, level):
    request = ask(personas, level)
    client = logged_in(personas.approver)
    url = reverse("request-decide", args=[request.pk])
    # The Deny button asks again, saying what a denial does; nothing is decided yet.
    asked = client.post(url, {"decision": "deny", "comment": "no"})
    assert asked.status_code == 200
    assert 'data-testid="deny-consequence"' in asked.content.decode()
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    client.post(url, {"decision": "deny", "comment": "no", "confirm": "yes"})
    request.refresh_from_db()
    assert request.status == RequestStatus.DENIED
    assert AuditEvent.objects.filter(action="request.denied", target_id=str(request.pk)).exists()
    assert not Grant.objects.exists()


def test_deciding_is_post_only(personas, level):
    request = ask(personas, level)
    client = logged_in(personas.approver)
    assert client.get(reverse("request-decide", args=[request.pk])).status_code == 405
    assert client.get(reverse("request-cancel", args=[request.pk])).status_code == 405


def test_a_viewer_who_is_not_a_reviewer_is_refused_a_decision(personas, level):
    # The manager may read the report's request but does not review this stage.
    request = ask(personas, level)
    response = logged_in(personas.manager).post(
        reverse("request-decide", args=[request.pk]), {"decision": "approve"}
    )
    assert response.status_code == 403
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert not AuditEvent.objects.filter(action="request.approved").exists()


def test_the_requester_cannot_approve_their_own_request_and_is_told_why(personas, level):
    request = ask(personas, level, user=personas.approver)
    client = logged_in(personas.approver)
    response = client.post(
        reverse("request-decide", args=[request.pk]), {"decision": "approve"}, follow=True
    )
    assert "You cannot decide your own request" in response.content.decode()
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


def test_a_decided_request_is_not_decided_again(personas, level):
    request = ask(personas, level)
    svc.decide(request, reviewer=personas.approver, approve=False, comment="no")
    response = logged_in(personas.admin).post(
        reverse("request-decide", args=[request.pk]), {"decision": "approve"}, follow=True
    )
    assert "already denied" in response.content.decode()
    assert AuditEvent.objects.filter(action="request.approved").count() == 0


def test_a_nonsense_decision_changes_nothing(personas, level):
    request = ask(personas, level)
    response = logged_in(personas.approver).post(
        reverse("request-decide", args=[request.pk]), {"decision": "maybe"}, follow=True
    )
    assert "Choose approve or deny" in response.content.decode()
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


def test_the_requester_cancels(personas, level):
    request = ask(personas, level)
    client = logged_in(personas.requester)
    assert (
        "Cancel this request"
        in client.get(reverse("request-detail", args=[request.pk])).content.decode()
    )
    client.post(reverse("request-cancel", args=[request.pk]))
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELED
    assert AuditEvent.objects.filter(action="request.canceled", target_id=str(request.pk)).exists()
    again = client.post(reverse("request-cancel", args=[request.pk]), follow=True)
    assert "Only a pending request can be canceled." in again.content.decode()


def test_a_reviewer_cannot_cancel_someone_elses_request(personas, level):
    request = ask(personas, level)
    response = logged_in(personas.approver).post(reverse("request-cancel", args=[request.pk]))
    assert response.status_code == 403
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


def test_the_request_pages_send_anonymous_people_to_login(personas, level):
    request = ask(personas, level)
    client = Client()
    for response in (
        client.get(reverse("my-requests")),
        client.get(reverse("request-detail", args=[request.pk])),
        client.post(reverse("request-decide", args=[request.pk]), {"decision": "approve"}),
        client.post(reverse("request-cancel", args=[request.pk])),
        client.get(reverse("approvals")),
    ):
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


# The approvals queue ------------------------------------------------------------------------------
def test_the_queue_shows_what_waits_for_me_with_a_count_in_the_navigation(personas, level):
    request = ask(personas, level)
    other = ask(personas, level, user=personas.outsider)
    body = logged_in(personas.approver).get(reverse("approvals")).content.decode()
    mine = body.split('data-testid="queue-mine"')[1].split("</table>")[0]
    assert f'data-request-id="{request.pk}"' in mine and f'data-request-id="{other.pk}"' in mine
    assert 'data-testid="queue-all"' not in body
    assert '<span class="badge" title="Requests waiting for your decision">2</span>' in body
    nothing = logged_in(personas.outsider).get(reverse("approvals")).content.decode()
    assert "Nothing waits for your decision." in nothing
    assert f'data-request-id="{request.pk}"' not in nothing


def test_the_queue_shows_a_request_to_its_current_stage_reviewers_only(personas, level):
    request = ask(personas, level)
    StageReviewer.objects.filter(request=request, user=personas.approver).delete()
    StageReviewer.objects.create(request=request, stage=1, user=personas.manager)
    StageReviewer.objects.create(request=request, stage=2, user=personas.approver)
    body = logged_in(personas.approver).get(reverse("approvals")).content.decode()
    assert f'data-request-id="{request.pk}"' not in body
    body = logged_in(personas.manager).get(reverse("approvals")).content.decode()
    assert f'data-request-id="{request.pk}"' in body


def test_admins_see_every_pending_request_and_may_override(personas, level):
    request = ask(personas, level)
    client = logged_in(personas.admin)
    body = client.get(reverse("approvals")).content.decode()
    others = body.split('data-testid="queue-all"')[1].split("</table>")[0]
    assert f'data-request-id="{request.pk}"' in others
    response = client.post(
        reverse("request-decide", args=[request.pk]),
        {"decision": "approve", "comment": "incident", "next": reverse("approvals")},
    )
    assert response["Location"] == reverse("approvals")
    event = AuditEvent.objects.get(action="request.approved", target_id=str(request.pk))
    assert event.details["override"] is True


def test_an_approval_of_the_first_stage_leaves_the_request_waiting_for_the_next(personas, level):
    rule = RequestRule.objects.create(resource=personas.resource)
    rule.stages.create(order=1, reviewers=ReviewerKind.OWNERS, mode=StageMode.ANY)
    rule.stages.create(order=2, reviewers=ReviewerKind.MANAGER, mode=StageMode.ANY)
    request = ask(personas, level)
    response = logged_in(personas.approver).post(
        reverse("request-decide", args=[request.pk]),
        {"decision": "approve", "next": reverse("approvals")},
        follow=True,
    )
    assert "it now waits for stage 2" in response.content.decode()
    body = logged_in(personas.manager).get(reverse("approvals")).content.decode()
    assert f'data-request-id="{request.pk}"' in body


def test_the_queue_costs_the_same_queries_for_many_requests(
    personas, level, django_assert_max_num_queries
):
    for index in range(30):
        extra = AccessLevel.objects.create(
            resource=personas.resource, remote_id=f"l{index}", name=f"L{index}"
        )
        ask(personas, extra)
    client = logged_in(personas.admin)
    with django_assert_max_num_queries(10):
        assert client.get(reverse("approvals")).status_code == 200


# Extensions ----------------------------------------------------------------------------------
@pytest.fixture
def held(personas, level):
    return Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=level,
        source=GrantSource.REQUEST,
        status=GrantStatus.ACTIVE,
        expires_at=timezone.now() + timedelta(hours=4),
    )


def test_an_approved_extension_says_the_held_access_now_lasts_longer(personas, held):
    rule = RequestRule.objects.create(
        resource=personas.resource, extension_policy=ExtensionPolicy.AUTO_APPROVE
    )
    rule.stages.create(order=1)

    page = logged_in(personas.requester).post(
        reverse("grant-extend", args=[held.pk]), {"duration": 3600, "reason": "x"}, follow=True
    )

    held.refresh_from_db()
    body = page.content.decode()
    assert "<h2>Access extended</h2>" in body
    assert f"Grant #{held.pk}</a>" in body
    outcome = body.split('data-testid="extension-outcome">')[1].split("</p>")[0]
    assert outcome == (
        "Approved: this access was already granted, so nothing changes in AWS; it now lasts "
        f"until {held.expires_at:%Y-%m-%d %H:%M} UTC."
    )
    assert "being granted" not in body


def test_a_pending_extension_shows_the_access_it_would_extend(personas, held):
    page = logged_in(personas.requester).post(
        reverse("grant-extend", args=[held.pk]), {"duration": 3600, "reason": "x"}, follow=True
    )
    body = page.content.decode()
    assert "<h2>Access to extend</h2>" in body
    assert "extension-outcome" not in body and "being granted" not in body
