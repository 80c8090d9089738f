"""Requests judged by their rules: stages, ANY/ALL, self-approval, overrides, extensions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied

from access.choices import (
    ExtensionPolicy,
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
    StageReviewer,
    UserGroup,
)
from access.services import requests as svc
from access.services.owners import remove_owner
from audit.models import AuditEvent
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def level(personas):
    return AccessLevel.objects.create(
        resource=personas.resource, remote_id="arn:aws:sso:::permissionSet/ps-1", name="ReadOnly"
    )


def ask(personas, level, *, user=None, duration=timedelta(hours=8), reason="debug prod"):
    return svc.submit_requests(
        requested_by=user or personas.requester,
        items=[svc.RequestItem(personas.resource.pk, level.pk, duration)],
        reason=reason,
    )[0]


def rule(personas, *stages, **fields):
    made = RequestRule.objects.create(resource=personas.resource, **fields)
    for order, (reviewers, mode) in enumerate(stages, start=1):
        made.stages.create(order=order, reviewers=reviewers, mode=mode)
    return made


def test_the_default_rule_sends_a_request_to_the_owners(personas, level):
    request = ask(personas, level)
    assert request.status == RequestStatus.PENDING
    assert request.reviewer_ids == [personas.approver.pk]
    assert AuditEvent.objects.filter(action="request.created", target_id=str(request.pk)).exists()


def test_an_owner_approval_creates_one_pending_grant(personas, level):
    request = ask(personas, level)
    svc.decide(request, reviewer=personas.approver, approve=True, comment="ok")
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    grant = Grant.objects.get(request=request)
    assert grant.status == GrantStatus.PENDING
    assert grant.expires_at is not None
    assert grant.assignment is not None
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"request.created", "request.approved", "grant.created"} <= actions


def test_it_refuses_self_approval(personas, level):
    request = ask(personas, level, user=personas.approver)
    with pytest.raises(svc.DecisionError):
        svc.decide(request, reviewer=personas.approver, approve=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    # The owner was the only reviewer, so the admins decide instead.
    assert personas.admin.pk in request.reviewer_ids


def test_self_approval_when_the_rule_allows_it_says_so_in_the_audit_event(personas, level):
    rule(personas, (ReviewerKind.OWNERS, StageMode.ANY), allow_self_approval=True)
    request = ask(personas, level, user=personas.approver)
    svc.decide(request, reviewer=personas.approver, approve=True)
    event = AuditEvent.objects.get(action="request.approved", target_id=str(request.pk))
    assert event.details["self_approval"] is True


def test_an_all_stage_waits_for_every_reviewer_then_the_next_stage_starts(personas, level):
    second = make_user("sam.second@example.com")
    personas.resource.owners.create(user=second)
    rule(
        personas,
        (ReviewerKind.OWNERS, StageMode.ALL),
        (ReviewerKind.MANAGER, StageMode.ANY),
    )
    request = ask(personas, level)
    svc.decide(request, reviewer=personas.approver, approve=True)
    request.refresh_from_db()
    assert request.current_stage == 1 and request.status == RequestStatus.PENDING
    svc.decide(request, reviewer=second, approve=True)
    request.refresh_from_db()
    assert request.current_stage == 2
    assert request.reviewer_ids == [personas.manager.pk]
    with pytest.raises(PermissionDenied):
        svc.decide(request, reviewer=second, approve=True)
    svc.decide(request, reviewer=personas.manager, approve=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    assert Grant.objects.filter(request=request).count() == 1


def test_a_denial_ends_the_request_without_a_grant(personas, level):
    request = ask(personas, level)
    svc.decide(request, reviewer=personas.approver, approve=False, comment="not needed")
    request.refresh_from_db()
    assert request.status == RequestStatus.DENIED
    assert not Grant.objects.exists()
    with pytest.raises(svc.DecisionError):
        svc.decide(request, reviewer=personas.approver, approve=True)


def test_an_admin_overrides_a_stage_they_are_not_a_reviewer_of(personas, level):
    rule(personas, (ReviewerKind.OWNERS, StageMode.ANY), (ReviewerKind.MANAGER, StageMode.ANY))
    request = ask(personas, level)
    svc.decide(request, reviewer=personas.admin, approve=True, comment="incident")
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    event = AuditEvent.objects.get(action="request.approved", target_id=str(request.pk))
    assert event.details["override"] is True


def test_rules_by_requester_group_pick_the_highest_priority_match(personas, level):
    oncall = UserGroup.objects.create(name="On-call")
    oncall.members.add(personas.requester)
    rule(personas, (ReviewerKind.ADMINS, StageMode.ANY), priority=10)
    rule(personas, auto_approve=True, requester_group=oncall, priority=50)
    request = ask(personas, level)
    assert request.status == RequestStatus.APPROVED and request.auto_approved
    other = ask(personas, level, user=personas.outsider)
    assert other.status == RequestStatus.PENDING
    assert personas.admin.pk in other.reviewer_ids


def test_bad_input_names_each_problem_and_creates_nothing(personas, level):
    rule(personas, (ReviewerKind.OWNERS, StageMode.ANY), max_duration=timedelta(days=1))
    other = AccessLevel.objects.create(
        resource=personas.resource,
        remote_id="x",
        name="Gone",
        deleted_at=personas.resource.first_seen_at,
    )
    third = AccessLevel.objects.create(resource=personas.resource, remote_id="y", name="Admin")
    items = [
        svc.RequestItem(personas.resource.pk, level.pk, timedelta(days=3)),
        svc.RequestItem(personas.resource.pk, other.pk, timedelta(hours=1)),
        svc.RequestItem(999999, level.pk, timedelta(hours=1)),
        svc.RequestItem(personas.resource.pk, third.pk, None),
    ]
    with pytest.raises(svc.RequestInvalid) as caught:
        svc.submit_requests(requested_by=personas.requester, items=items, reason="")
    text = " ".join(caught.value.messages)
    assert "at most 1 day; you asked for 3 days" in text
    assert "no longer exists" in text
    assert "does not exist" in text
    assert "must have an end" in text
    assert "Give a reason" in text
    assert not AccessRequest.objects.exists()


def test_only_admins_owners_and_managers_ask_on_behalf_of_others(personas, level):
    with pytest.raises(svc.RequestInvalid):
        ask_for = svc.RequestItem(personas.resource.pk, level.pk, timedelta(hours=1))
        svc.submit_requests(
            requested_by=personas.outsider, user=personas.requester, items=[ask_for], reason="x"
        )
    made = svc.submit_requests(
        requested_by=personas.manager,
        user=personas.requester,
        items=[svc.RequestItem(personas.resource.pk, level.pk, timedelta(hours=1))],
        reason="for rob",
    )
    assert made[0].user == personas.requester and made[0].requested_by == personas.manager


def test_an_extension_follows_the_extension_rule(personas, level):
    rule(personas, auto_approve=True, extension_policy=ExtensionPolicy.AUTO_APPROVE)
    request = ask(personas, level)
    grant = Grant.objects.get(request=request)
    before = grant.expires_at
    ext = svc.request_extension(
        grant, requested_by=personas.requester, duration=timedelta(hours=4), reason="more"
    )
    grant.refresh_from_db()
    assert ext.status == RequestStatus.APPROVED
    assert grant.expires_at == before + timedelta(hours=4)
    assert AuditEvent.objects.filter(action="grant.extended").exists()
    RequestRule.objects.update(extension_policy=ExtensionPolicy.NOT_ALLOWED)
    with pytest.raises(svc.RequestInvalid):
        svc.request_extension(
            grant, requested_by=personas.requester, duration=timedelta(hours=4), reason="more"
        )


def test_pending_requests_expire_after_the_configured_time(personas, level, settings):
    request = ask(personas, level)
    assert svc.expire_pending_requests(request.pending_until + timedelta(seconds=1)) == 1
    request.refresh_from_db()
    assert request.status == RequestStatus.EXPIRED
    assert AuditEvent.objects.filter(action="request.expired").exists()


def test_cancel_is_for_the_requester(personas, level):
    request = ask(personas, level)
    with pytest.raises(PermissionDenied):
        svc.cancel_request(request, actor=personas.outsider)
    svc.cancel_request(request, actor=personas.requester)
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELED
    assert AuditEvent.objects.filter(action="request.canceled").exists()


# Reviewers are fixed when a stage starts, and must still qualify when they decide ------------
def test_a_removed_owner_can_no_longer_approve_a_request_of_their_stage(personas, level):
    second = make_user("sam.second@example.com")
    personas.resource.owners.create(user=second)
    request = ask(personas, level)
    assert personas.approver.pk in request.reviewer_ids
    remove_owner(personas.resource.owners.get(user=personas.approver), actor=personas.admin)
    assert not svc.can_decide(personas.approver, request)
    with pytest.raises(svc.DecisionError, match="neither an owner of prod nor an admin"):
        svc.decide(request, reviewer=personas.approver, approve=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert not request.approvals.exists()
    assert not Grant.objects.exists()
    # The owner who still is decides.
    svc.decide(request, reviewer=second, approve=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_a_former_manager_cannot_approve_and_the_new_one_was_not_asked(personas, level):
    rule(personas, (ReviewerKind.MANAGER, StageMode.ANY))
    request = ask(personas, level)
    assert request.reviewer_ids == [personas.manager.pk]
    new_manager = make_user("nora.new@example.com")
    personas.requester.manager = new_manager
    personas.requester.save()
    with pytest.raises(svc.DecisionError, match="neither rob.requester@example.com's manager"):
        svc.decide(request, reviewer=personas.manager, approve=True)
    # Becoming the manager later does not make one a reviewer of a stage already started.
    with pytest.raises(PermissionDenied):
        svc.decide(request, reviewer=new_manager, approve=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING and not Grant.objects.exists()
    svc.decide(request, reviewer=personas.admin, approve=True, comment="manager changed")
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_an_all_stage_does_not_wait_for_an_owner_removed_since(personas, level):
    second = make_user("sam.second@example.com")
    personas.resource.owners.create(user=second)
    rule(personas, (ReviewerKind.OWNERS, StageMode.ALL))
    request = ask(personas, level)
    assert set(request.reviewer_ids) == {personas.approver.pk, second.pk}
    remove_owner(personas.resource.owners.get(user=second), actor=personas.admin)
    svc.decide(request, reviewer=personas.approver, approve=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_the_stage_reviewers_table_says_who_decides(personas, level):
    # Both are owners; only the one listed for the current stage decides it.
    second = make_user("sam.second@example.com")
    personas.resource.owners.create(user=second)
    request = ask(personas, level)
    StageReviewer.objects.filter(request=request).exclude(user=second).delete()
    StageReviewer.objects.get_or_create(request=request, stage=1, user=second)
    # A row for another stage does not make the approver a reviewer of this one.
    StageReviewer.objects.create(request=request, stage=2, user=personas.approver)
    request.refresh_from_db()

    assert request.reviewer_ids == [second.pk]
    assert not svc.can_decide(personas.approver, request)
    with pytest.raises(PermissionDenied):
        svc.decide(request, reviewer=personas.approver, approve=True)
    assert svc.can_decide(second, request)
    svc.decide(request, reviewer=second, approve=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_each_stage_keeps_the_reviewers_it_started_with(personas, level):
    rule(personas, (ReviewerKind.OWNERS, StageMode.ANY), (ReviewerKind.MANAGER, StageMode.ANY))
    request = ask(personas, level)
    svc.decide(request, reviewer=personas.approver, approve=True)
    request.refresh_from_db()

    assert request.current_stage == 2
    assert request.reviewer_ids == [personas.manager.pk]
    assert sorted(request.stage_reviewers.values_list("stage", "user_id")) == [
        (1, personas.approver.pk),
        (2, personas.manager.pk),
    ]
    event = AuditEvent.objects.get(action="request.stage_started", target_id=str(request.pk))
    assert event.details["reviewers"] == [personas.manager.email]
