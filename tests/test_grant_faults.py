"""Grants of Identity Center group memberships while AWS misbehaves, through the fault proxy
(tests/aws_faults.py) in front of the stand-in: throttling and 5xx on a share of the calls
are retried (by botocore, then by the assignment's backoff, driven here by
engine.reconcile_due with a moved clock) until every grant and revoke is done; a grant
whose calls AWS refuses shows its failure, raises the failing alert after
GRANT_ALERT_AFTER_ATTEMPTS attempts, and is retried until it goes through. What the
identity store holds is read from the stand-in directly, past the proxy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from access import drivers, engine
from access.choices import (
    AssignmentStatus,
    GrantSource,
    GrantStatus,
    PropagationStatus,
    ResourceType,
)
from access.models import Assignment, Grant, Resource, User
from access.services import grants
from audit.models import AuditEvent
from aws_integration.grants import base, identity_center
from aws_integration.models import AwsApp
from aws_integration.tests.sync_fixtures import make_app, management, seeded_org, sync
from demo import seed
from tests.aws_faults import AwsFaults
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

Pair = tuple[User, Resource, str]  # portal user, group, Identity Center user id


@pytest.fixture
def org(aws_faults_kept: AwsFaults, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings.TASKS_INLINE = True
    settings.GRANT_ALERT_AFTER_ATTEMPTS = 3
    # The Identity Center group driver, as aws_integration registers it at start-up.
    for resource_type, driver in identity_center.DRIVERS.items():
        monkeypatch.setitem(drivers._registry, resource_type, driver)
    result = seeded_org()
    base.forget_sessions()
    return result


@pytest.fixture
def store(org: seed.SeedResult, moto_server: str) -> Any:
    """The identity store in the stand-in itself, not through the proxy."""
    with override_settings(AWS_ENDPOINT_URL=moto_server):
        return management("identitystore")


def members(store: Any, org: seed.SeedResult, group_id: str) -> set[str]:
    found: set[str] = set()
    for page in store.get_paginator("list_group_memberships").paginate(
        IdentityStoreId=org.identity_store_id, GroupId=group_id
    ):
        found.update(m["MemberId"]["UserId"] for m in page["GroupMemberships"])
    return found


@pytest.fixture
def pairs(org: seed.SeedResult, store: Any) -> Iterator[list[Pair]]:
    """Every (user, group) of the stand-in where the user is not a member, on a synced
    app; memberships left over by a failing test are taken out afterwards."""
    for email in org.users:
        make_user(email.lower(), email_verified=True)
    app: AwsApp = make_app(org, organization_management=False)
    run = sync(app)
    assert run.status == "succeeded", run.message
    found = [
        (
            User.objects.get(email=email.lower()),
            Resource.objects.get(app=app, type=ResourceType.IDC_GROUP, remote_id=group_id),
            user_id,
        )
        for email, user_id in sorted(org.users.items())
        for group_id in sorted(org.groups.values())
        if user_id not in members(store, org, group_id)
    ]
    assert len(found) >= 2
    yield found
    for _, group, user_id in found:
        try:
            leftover = store.get_group_membership_id(
                IdentityStoreId=org.identity_store_id,
                GroupId=group.remote_id,
                MemberId={"UserId": user_id},
            )["MembershipId"]
        except store.exceptions.ResourceNotFoundException:
            continue
        store.delete_group_membership(IdentityStoreId=org.identity_store_id, MembershipId=leftover)


def grant(pair: Pair, expires_at: datetime, capture: Any) -> Grant:
    user, group, _ = pair
    with capture(execute=True):
        return grants.create_grant(
            user=user,
            resource=group,
            access_level=group.access_levels.get(remote_id="member"),
            expires_at=expires_at,
            source=GrantSource.ADMIN,
            actor=None,
        )


def retry_until(done: Any, capture: Any, *, rounds: int = 25) -> datetime:
    """Moves the clock to each next due retry and runs the retries, until ``done()``.
    Returns the clock's last position."""
    clock = timezone.now()
    for _ in range(rounds):
        if done():
            return clock
        due = (
            Assignment.objects.filter(next_attempt_at__isnull=False)
            .order_by("next_attempt_at")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        assert due is not None, "nothing left to retry, yet not done"
        clock = max(clock, due) + timedelta(seconds=1)
        # Ticking: botocore's retry limiter measures real time passing.
        with time_machine.travel(clock, tick=True), capture(execute=True):
            engine.reconcile_due(timezone.now())
    assert done(), f"not done after {rounds} rounds of retries"
    return clock


def statuses(made: list[Grant]) -> set[tuple[str, str]]:
    return set(
        Grant.objects.filter(pk__in=[g.pk for g in made]).values_list(
            "status", "propagation_status"
        )
    )


def count(action: str, made: list[Grant]) -> int:
    return AuditEvent.objects.filter(action=action, target_id__in=[str(g.pk) for g in made]).count()


def test_grants_and_revokes_complete_while_aws_throttles_and_fails_a_share_of_calls(
    org, store, pairs, aws_faults_kept, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    # Three times in a row, as many times as botocore tries (AWS_MAX_ATTEMPTS=2 retries
    # after the first attempt): these reach the assignment's backoff for sure.
    aws_faults_kept.fail("identitystore", "CreateGroupMembership", status=500, times=3)
    aws_faults_kept.fail("identitystore", "DeleteGroupMembership", status="throttle", times=3)
    # About 30% of the identity store's calls, and of the role assumptions, fail.
    aws_faults_kept.fail("identitystore", status="throttle", share=0.15, seed=11)
    aws_faults_kept.fail("identitystore", status=500, share=0.18, seed=12)
    aws_faults_kept.fail("sts", status="throttle", share=0.3, seed=13)
    expires_at = timezone.now() + timedelta(days=1)

    made = [grant(pair, expires_at, capture) for pair in pairs]
    retry_until(
        lambda: statuses(made) == {(GrantStatus.ACTIVE, PropagationStatus.APPLIED)}, capture
    )
    for _, group, user_id in pairs:
        assert user_id in members(store, org, group.remote_id)

    with time_machine.travel(expires_at + timedelta(seconds=1), tick=True), capture(execute=True):
        assert grants.expire_due_grants(timezone.now()) == len(made)
    retry_until(
        lambda: statuses(made) == {(GrantStatus.REVOKED, PropagationStatus.REMOVED)}, capture
    )
    for _, group, user_id in pairs:
        assert user_id not in members(store, org, group.remote_id)
    assert not Assignment.objects.exclude(status=AssignmentStatus.ABSENT).exists()

    # The faults did happen: most retried by botocore, some by the backoff.
    faults = aws_faults_kept.faults()
    assert {"ThrottlingException", "InternalServerException"} <= {c.fault for c in faults}
    assert len(faults) > 4
    assert count("grant.apply_failed", made) >= 1
    assert count("grant.remove_failed", made) >= 1


def test_a_refused_grant_shows_its_failure_raises_the_failing_alert_and_is_retried(
    org, store, pairs, aws_faults_kept, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    pair = pairs[0]
    _, group, user_id = pair
    refusal = aws_faults_kept.deny("identitystore", "CreateGroupMembership")
    expires_at = timezone.now() + timedelta(days=1)

    made = grant(pair, expires_at, capture)
    made.refresh_from_db()
    assert (made.status, made.propagation_status) == (GrantStatus.PENDING, PropagationStatus.FAILED)
    assert "AccessDeniedException" in made.last_error
    assert "identitystore:CreateGroupMembership" in made.last_error
    assert count("grant.failing", [made]) == 0

    def attempts_made() -> int:
        return Assignment.objects.get(pk=made.assignment_id).attempts

    attempts = [attempts_made()]
    for before in (1, 2, 3):
        retry_until(lambda before=before: attempts_made() > before, capture, rounds=1)
        attempts.append(attempts_made())
    assert attempts == [1, 2, 3, 4]
    # Refused every time: retried each time (botocore does not retry a refusal).
    assert refusal.hits == 4
    failing = AuditEvent.objects.filter(action="grant.failing", target_id=str(made.pk))
    assert failing.count() == 1
    assert failing.get().details["attempts"] == 3
    assert list(grants.failing_grants()) == [made]
    assert user_id not in members(store, org, group.remote_id)

    aws_faults_kept.clear()  # the admin fixed the ingester role's policy
    retry_until(
        lambda: statuses([made]) == {(GrantStatus.ACTIVE, PropagationStatus.APPLIED)}, capture
    )
    made.refresh_from_db()
    assert made.last_error == ""
    assert made.assignment.alerted_at is None
    assert user_id in members(store, org, group.remote_id)

    with time_machine.travel(expires_at + timedelta(seconds=1), tick=True), capture(execute=True):
        assert grants.expire_due_grants(timezone.now()) == 1
    assert statuses([made]) == {(GrantStatus.REVOKED, PropagationStatus.REMOVED)}
    assert user_id not in members(store, org, group.remote_id)
