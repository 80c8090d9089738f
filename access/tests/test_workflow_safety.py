"""The workflow's safety rules: no change in AWS is dropped, retries are queued once and
bounded, extensions never outlive the rule's maximum, and nobody grants themselves access
by editing a rule or overriding their own request."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from access import drivers, engine, leases
from access.choices import (
    AssignmentStatus,
    ExtensionPolicy,
    GrantSource,
    GrantStatus,
    RequestStatus,
    ReviewerKind,
    StageMode,
)
from access.leases import LeaseKind
from access.models import AccessLevel, AccessRequest, Assignment, Grant, RequestRule
from access.services import grants as grant_service
from access.services import requests as request_service
from access.tests.test_admin_grants import FakeProvider
from access.tests.test_pages_rules import rule_data
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider(personas, monkeypatch, settings) -> FakeProvider:
    settings.TASKS_INLINE = True  # queued reconciles run when the transaction commits
    fake = FakeProvider()
    monkeypatch.setitem(drivers._registry, personas.resource.type, fake)
    return fake


@pytest.fixture
def level(personas) -> AccessLevel:
    return AccessLevel.objects.create(
        resource=personas.resource, remote_id="arn:aws:sso:::permissionSet/ps-1", name="ReadOnly"
    )


def direct_grant(personas, level, capture, *, expires_in=timedelta(days=1)) -> Grant:
    with capture(execute=True):
        made = grant_service.create_grant(
            user=personas.requester,
            resource=personas.resource,
            access_level=level,
            expires_at=timezone.now() + expires_in,
            source=GrantSource.ADMIN,
            actor=personas.admin,
        )
    made.refresh_from_db()
    return made


# Extensions, even approved automatically, stop at the rule's maximum from now
def test_automatic_extensions_never_take_access_past_the_rules_maximum(
    personas, level, provider, django_capture_on_commit_callbacks
):
    RequestRule.objects.create(
        resource=personas.resource,
        name="Short",
        max_duration=timedelta(days=1),
        extension_policy=ExtensionPolicy.AUTO_APPROVE,
        require_reason=False,
    ).stages.create(order=1, reviewers=ReviewerKind.OWNERS, mode=StageMode.ANY)
    made = direct_grant(personas, level, django_capture_on_commit_callbacks)
    for _ in range(10):
        try:
            request_service.request_extension(
                made, requested_by=personas.requester, duration=timedelta(days=1)
            )
        except request_service.RequestInvalid:
            break
        made.refresh_from_db()
    made.refresh_from_db()
    # "Access lasts at most 1 day": ten automatic extensions must not make it 11 days.
    assert made.expires_at <= timezone.now() + timedelta(days=1, minutes=1)


def test_an_extension_judged_on_an_old_copy_of_the_grant_still_stops_at_the_maximum(
    personas, level, provider, django_capture_on_commit_callbacks
):
    # What two extensions made at once see (test_workflow_concurrency runs the threads on
    # PostgreSQL): both read the grant before either extends it.
    RequestRule.objects.create(
        resource=personas.resource,
        name="A day at most",
        max_duration=timedelta(days=1),
        extension_policy=ExtensionPolicy.AUTO_APPROVE,
        require_reason=False,
    ).stages.create(order=1, reviewers=ReviewerKind.OWNERS, mode=StageMode.ANY)
    with time_machine.travel(timezone.now(), tick=False):
        made = direct_grant(
            personas, level, django_capture_on_commit_callbacks, expires_in=timedelta(hours=12)
        )
        old_copy = Grant.objects.get(pk=made.pk)
        first = request_service.request_extension(
            old_copy, requested_by=personas.requester, duration=timedelta(hours=12)
        )
        assert first.status == RequestStatus.APPROVED
        with pytest.raises(request_service.RequestInvalid, match="already lasts as long"):
            request_service.request_extension(
                old_copy, requested_by=personas.requester, duration=timedelta(hours=12)
            )
        made.refresh_from_db()
        assert made.expires_at == timezone.now() + timedelta(days=1)


# Who may revoke is the service's rule, whichever page, endpoint or action calls it
@pytest.mark.parametrize("who", ["outsider", "manager", "auditor"])
def test_revoking_someone_elses_grant_is_refused_by_the_service_itself(
    personas, level, provider, django_capture_on_commit_callbacks, who
):
    made = direct_grant(personas, level, django_capture_on_commit_callbacks)
    with pytest.raises(PermissionDenied, match="Only the holder"):
        grant_service.revoke_grant(made, actor=getattr(personas, who), reason="not mine")
    made.refresh_from_db()
    assert made.status == GrantStatus.ACTIVE and made.assignment_id in provider.held
    assert not AuditEvent.objects.filter(action="grant.revoked").exists()
    # The holder gives it up, and the system (expiry, actor None) may end it too.
    assert grant_service.revoke_grant(made, actor=personas.requester, reason="")


def test_the_system_revokes_without_an_actor(
    personas, level, provider, django_capture_on_commit_callbacks
):
    made = direct_grant(personas, level, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_service.revoke_grant(made, actor=None, reason="Offboarded by a script")
    made.refresh_from_db()
    assert made.status == GrantStatus.REVOKED and made.assignment_id not in provider.held


# A change that meets a busy assignment is planned again, never dropped
def test_a_revoke_that_finds_the_assignment_busy_is_still_carried_out_later(
    personas, level, provider, django_capture_on_commit_callbacks
):
    made = direct_grant(personas, level, django_capture_on_commit_callbacks)
    assert made.status == GrantStatus.ACTIVE and made.assignment_id in provider.held
    # Another worker holds the assignment's lease: it is finishing a reconcile that found
    # nothing to do (e.g. a duplicate retry) and returns "nothing" without looking again.
    other = leases.claim(leases.name(LeaseKind.ASSIGNMENT, made.assignment_id), grant_service.LEASE)
    assert other is not None
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_service.revoke_grant(made, actor=personas.admin, reason="left the team")
    leases.release(other)  # it returns

    # Every later safety net runs, much later.
    from access import tasks

    with (
        time_machine.travel(timezone.now() + timedelta(hours=2), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        tasks.sweep()
        engine.reconcile_due(timezone.now())  # the engine's next tick
    made.refresh_from_db()
    assert made.status == GrantStatus.REVOKED
    assert made.assignment_id not in provider.held


# A failed re-apply of present access is retried as a re-apply
def test_a_failed_reapply_of_present_access_is_retried_and_then_left_alone(
    personas, level, provider, django_capture_on_commit_callbacks
):
    made = direct_grant(personas, level, django_capture_on_commit_callbacks)
    assert made.status == GrantStatus.ACTIVE
    provider.failing = "Assigning in a new account: ThrottlingException"
    assert grant_service.reconcile_assignment(made.assignment_id, force=True).action == "failed"
    provider.failing = ""
    assignment = Assignment.objects.get(pk=made.assignment_id)
    assert assignment.status == AssignmentStatus.REAPPLY and assignment.next_attempt_at

    later = timezone.now() + timedelta(hours=2)
    calls_before = provider.calls
    with time_machine.travel(later, tick=False):
        engine.reconcile_due(timezone.now())
    # The retry must try the re-apply again (the OU's new account still lacks access) ...
    assert provider.calls > calls_before
    assignment.refresh_from_db()
    # ... and, done, must not leave the assignment due for ever (queued every timer tick).
    assert assignment.next_attempt_at is None
    made.refresh_from_db()
    assert made.last_error == ""


# A due retry is made once, not on every tick of the engine
def test_a_due_retry_is_made_once_not_on_every_tick(
    personas, level, provider, django_capture_on_commit_callbacks
):
    provider.failing = "AWS said no"
    made = direct_grant(personas, level, django_capture_on_commit_callbacks)
    calls_before = provider.calls

    with time_machine.travel(timezone.now() + timedelta(minutes=1), tick=False):
        assert engine.reconcile_due(timezone.now()) == 1
        assert engine.reconcile_due(timezone.now()) == 0  # the next tick: backoff planned it later
    assert provider.calls == calls_before + 1
    assert Assignment.objects.get(pk=made.assignment_id).attempts == 2


# Approving an extension of access that ended meanwhile is refused with a message
def test_approving_an_extension_of_access_that_ended_is_refused_cleanly(
    personas, level, provider, django_capture_on_commit_callbacks
):
    made = direct_grant(personas, level, django_capture_on_commit_callbacks)
    extension = request_service.request_extension(
        made, requested_by=personas.requester, duration=timedelta(hours=8), reason="more"
    )
    assert extension.status == RequestStatus.PENDING
    with django_capture_on_commit_callbacks(execute=True):
        grant_service.revoke_grant(made, actor=personas.admin, reason="done")
    client = Client(raise_request_exception=False)
    client.force_login(personas.approver)
    response = client.post(reverse("request-decide", args=[extension.pk]), {"decision": "approve"})
    assert response.status_code == 302  # a message, not a server error
    extension.refresh_from_db()
    assert extension.status != RequestStatus.PENDING  # not left pending for its reviewers


# Owners cannot make their own requests approve themselves by editing the rule
def test_an_owner_cannot_turn_on_automatic_approval_to_grant_themselves_access(
    personas, level, provider, django_capture_on_commit_callbacks
):
    owner = Client()
    owner.force_login(personas.approver)
    owner.post(
        reverse("resource-rule-new", args=[personas.resource.pk]),
        rule_data(auto_approve="on", **{"stages-0-order": ""}),
    )
    try:
        with django_capture_on_commit_callbacks(execute=True):
            request_service.submit_requests(
                requested_by=personas.approver,
                items=[
                    request_service.RequestItem(personas.resource.pk, level.pk, timedelta(hours=8))
                ],
                reason="because I can",
            )
    except request_service.RequestInvalid:
        pass
    assert not Grant.objects.filter(user=personas.approver).exists()
    assert not AccessRequest.objects.filter(
        requested_by=personas.approver, status=RequestStatus.APPROVED
    ).exists()


def test_the_sweep_expires_nothing_that_was_extended_since_it_was_found_due(
    personas, level, provider, django_capture_on_commit_callbacks
):
    grant = direct_grant(personas, level, django_capture_on_commit_callbacks)
    due_at = grant.expires_at + timedelta(seconds=1)
    Grant.objects.filter(pk=grant.pk).update(expires_at=due_at + timedelta(hours=4))
    stale = Grant.objects.get(pk=grant.pk)
    stale.expires_at = grant.expires_at  # as the sweep read it, before the extension
    with time_machine.travel(due_at, tick=False):
        assert not grant_service.revoke_grant(stale, actor=None, reason="Expired", expired=True)
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.ACTIVE


def test_an_admin_cannot_override_their_own_request_even_where_self_approval_is_allowed(
    personas, level
):
    rule = RequestRule.objects.create(
        resource=personas.resource, allow_self_approval=True, name="Self-approval allowed"
    )
    rule.stages.create(order=1, reviewers=ReviewerKind.OWNERS, mode=StageMode.ANY)
    made = request_service.submit_requests(
        requested_by=personas.admin,
        items=[request_service.RequestItem(personas.resource.pk, level.pk, timedelta(hours=1))],
        reason="mine",
    )[0]
    assert personas.admin.pk not in made.reviewer_ids
    with pytest.raises(request_service.DecisionError):
        request_service.decide(made, reviewer=personas.admin, approve=True)
    made.refresh_from_db()
    assert made.status == RequestStatus.PENDING


def test_a_revoke_whose_queued_task_was_lost_is_carried_out_by_the_sweep(
    personas, level, provider, django_capture_on_commit_callbacks
):
    made = direct_grant(personas, level, django_capture_on_commit_callbacks)
    # No on-commit execution, and the plan is gone too: the reconciliation is lost (a
    # worker died with it after clearing the plan).
    assert grant_service.revoke_grant(made, actor=personas.admin, reason="left the team")
    Assignment.objects.filter(pk=made.assignment_id).update(next_attempt_at=None)
    made.refresh_from_db()
    assert made.status == GrantStatus.REVOKING
    from access import tasks

    with django_capture_on_commit_callbacks(execute=True):
        tasks.sweep()  # too soon: it may still be on its way
    assert made.assignment_id in provider.held
    with (
        time_machine.travel(timezone.now() + timedelta(minutes=3), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert tasks.sweep()["replanned"] == 1
        engine.reconcile_due(timezone.now())  # the engine's next tick
    made.refresh_from_db()
    assert made.status == GrantStatus.REVOKED
    assert made.assignment_id not in provider.held


def test_deactivating_a_user_in_the_admin_revokes_their_access_and_cancels_their_requests(
    client, personas, level, provider, django_capture_on_commit_callbacks
):
    from access.tests.test_admin import change_url
    from access.tests.test_admin_audit import post_form, saved

    made = direct_grant(personas, level, django_capture_on_commit_callbacks)
    other = AccessLevel.objects.create(resource=personas.resource, remote_id="ps-2", name="Admin")
    pending = request_service.submit_requests(
        requested_by=personas.requester,
        items=[request_service.RequestItem(personas.resource.pk, other.pk, timedelta(hours=1))],
        reason="later",
    )[0]
    client.force_login(personas.admin)
    with django_capture_on_commit_callbacks(execute=True):
        saved(post_form(client, change_url(personas.requester), {"is_active": None}))

    made.refresh_from_db()
    pending.refresh_from_db()
    assert made.status == GrantStatus.REVOKED
    assert made.revoke_reason == "The user was deactivated"
    assert made.assignment_id not in provider.held
    assert pending.status == RequestStatus.CANCELED
    assert AuditEvent.objects.filter(action="grant.revoked", target_id=str(made.pk)).exists()
    assert AuditEvent.objects.filter(action="request.canceled", target_id=str(pending.pk)).exists()
