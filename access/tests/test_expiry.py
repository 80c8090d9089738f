"""Expiry of grants, with a moved clock: the grant engine and the sweep revoke what expired
(and nothing else), the timer runs once at a time under its lease, and overlapping grants
keep the shared AWS access until the last one ends. AWS is the stand-in, reached through
the real Identity Center group driver; what the identity store holds is asserted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from access import drivers, engine, leases, tasks
from access.choices import GrantSource, GrantStatus, PropagationStatus, ResourceType
from access.models import Assignment, Grant, Resource, User
from access.services import grants
from audit.models import AuditEvent
from aws_integration.grants import base, identity_center
from aws_integration.models import AwsApp
from aws_integration.tests.sync_fixtures import make_app, management, seeded_org, sync
from config.loops import StopAfter
from demo import seed
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db


# The stand-in organization ---------------------------------------------------------------
@pytest.fixture
def org(moto_server: str, settings: Any, monkeypatch: pytest.MonkeyPatch) -> seed.SeedResult:
    settings.AWS_ENDPOINT_URL = moto_server
    settings.AWS_MAX_ATTEMPTS = 2
    settings.TASKS_INLINE = True
    # The Identity Center group driver, as aws_integration registers it at start-up.
    for resource_type, driver in identity_center.DRIVERS.items():
        monkeypatch.setitem(drivers._registry, resource_type, driver)
    result = seeded_org()
    # Sessions assumed before a reset of the stand-in name roles it no longer holds.
    base.forget_sessions()
    return result


@pytest.fixture
def app(org: seed.SeedResult) -> AwsApp:
    for email in org.users:
        make_user(email.lower(), email_verified=True)
    app = make_app(org, organization_management=False)
    run = sync(app)
    assert run.status == "succeeded", run.message
    return app


def members(org: seed.SeedResult, group_id: str) -> set[str]:
    store = management("identitystore")
    found: set[str] = set()
    for page in store.get_paginator("list_group_memberships").paginate(
        IdentityStoreId=org.identity_store_id, GroupId=group_id
    ):
        found.update(m["MemberId"]["UserId"] for m in page["GroupMemberships"])
    return found


@pytest.fixture
def membership(org: seed.SeedResult, app: AwsApp) -> Iterator[tuple[User, Resource, str]]:
    """A portal user, an Identity Center group they are not a member of, and their
    Identity Center user id; the membership is taken out again after the test."""
    pair = next(
        (email, group_id)
        for email, user_id in sorted(org.users.items())
        for group_id in sorted(org.groups.values())
        if user_id not in members(org, group_id)
    )
    email, group_id = pair
    user = User.objects.get(email=email.lower())
    group = Resource.objects.get(app=app, type=ResourceType.IDC_GROUP, remote_id=group_id)
    user_id = org.users[email]
    yield user, group, user_id
    store = management("identitystore")
    try:
        leftover = store.get_group_membership_id(
            IdentityStoreId=org.identity_store_id, GroupId=group_id, MemberId={"UserId": user_id}
        )["MembershipId"]
    except store.exceptions.ResourceNotFoundException:
        return
    store.delete_group_membership(IdentityStoreId=org.identity_store_id, MembershipId=leftover)


def grant(group: Resource, user: User, expires_at: datetime | None, capture: Any) -> Grant:
    with capture(execute=True):
        made = grants.create_grant(
            user=user,
            resource=group,
            access_level=group.access_levels.get(remote_id="member"),
            expires_at=expires_at,
            source=GrantSource.ADMIN,
            actor=None,
        )
    made.refresh_from_db()
    return made


def events(action: str, target: Grant) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_id=str(target.pk)))


# Expiry ---------------------------------------------------------------------------------
def test_a_grant_is_revoked_once_its_expiry_passes_and_not_before(
    org, membership, django_capture_on_commit_callbacks
):
    user, group, user_id = membership
    expires_at = timezone.now() + timedelta(hours=8)
    made = grant(group, user, expires_at, django_capture_on_commit_callbacks)
    assert made.status == GrantStatus.ACTIVE
    assert user_id in members(org, group.remote_id)

    with (
        time_machine.travel(expires_at - timedelta(seconds=1), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert grants.expire_due_grants(timezone.now()) == 0
    made.refresh_from_db()
    assert made.status == GrantStatus.ACTIVE
    assert user_id in members(org, group.remote_id)

    with (
        time_machine.travel(expires_at, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert grants.expire_due_grants(timezone.now()) == 1
    made.refresh_from_db()
    assert (made.status, made.propagation_status) == (
        GrantStatus.REVOKED,
        PropagationStatus.REMOVED,
    )
    assert made.revoke_reason == grants.REASON_EXPIRED
    assert len(events("grant.expired", made)) == 1
    assert user_id not in members(org, group.remote_id)


def test_the_grant_engine_revokes_a_grant_that_expires_while_it_runs(
    org, membership, django_capture_on_commit_callbacks, monkeypatch
):
    user, group, user_id = membership
    expires_at = timezone.now() + timedelta(hours=1)
    made = grant(group, user, expires_at, django_capture_on_commit_callbacks)
    assert user_id in members(org, group.remote_id)
    # The test's transaction is not a worker's finished one: keep its connection.
    monkeypatch.setattr(engine, "keep_connections", lambda: None)

    # A short real run (the engine's own loop, 1.5 s) starting half a second before expiry.
    with (
        time_machine.travel(expires_at - timedelta(seconds=0.5), tick=True),
        django_capture_on_commit_callbacks(execute=True),
    ):
        done = engine.work(StopAfter(1.5))
    assert done["expired"] == 1
    made.refresh_from_db()
    assert made.status == GrantStatus.REVOKED
    assert made.revoked_at >= expires_at
    assert user_id not in members(org, group.remote_id)


def test_a_second_grant_engine_stands_by_while_one_holds_the_lease_and_then_takes_over(
    org, membership, django_capture_on_commit_callbacks, monkeypatch
):
    user, group, user_id = membership
    expires_at = timezone.now() + timedelta(hours=1)
    made = grant(group, user, expires_at, django_capture_on_commit_callbacks)
    monkeypatch.setattr(engine, "keep_connections", lambda: None)

    with time_machine.travel(expires_at + timedelta(minutes=1), tick=True):
        running = leases.claim(engine.ENGINE_LEASE, timedelta(minutes=2))  # the first engine
        assert running is not None
        with django_capture_on_commit_callbacks(execute=True):
            engine.run(StopAfter(0.3))
        made.refresh_from_db()
        assert made.status == GrantStatus.ACTIVE
        assert user_id in members(org, group.remote_id)

        leases.release(running)  # it stopped, or died and its lease ran out
        with django_capture_on_commit_callbacks(execute=True):
            engine.run(StopAfter(0.5))
        # A stopped engine lets go of its lease at once: the next one starts without a wait.
        assert not leases.is_held(engine.ENGINE_LEASE)
    made.refresh_from_db()
    assert made.status == GrantStatus.REVOKED
    assert user_id not in members(org, group.remote_id)


def test_the_sweep_revokes_overdue_grants(org, membership, django_capture_on_commit_callbacks):
    user, group, user_id = membership
    expires_at = timezone.now() + timedelta(days=2)
    made = grant(group, user, expires_at, django_capture_on_commit_callbacks)
    assert user_id in members(org, group.remote_id)

    with (
        time_machine.travel(expires_at + timedelta(hours=3), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        done = tasks.sweep()
    assert done["expired"] == 1
    made.refresh_from_db()
    assert made.status == GrantStatus.REVOKED
    assert user_id not in members(org, group.remote_id)


def test_overlapping_grants_share_one_assignment_and_aws_access_ends_with_the_last(
    org, membership, django_capture_on_commit_callbacks
):
    user, group, user_id = membership
    now = timezone.now()
    first = grant(group, user, now + timedelta(hours=1), django_capture_on_commit_callbacks)
    second = grant(group, user, now + timedelta(hours=3), django_capture_on_commit_callbacks)
    assert first.assignment_id == second.assignment_id
    assert Assignment.objects.filter(user=user, resource=group).count() == 1
    assert {first.status, second.status} == {GrantStatus.ACTIVE}
    assert user_id in members(org, group.remote_id)

    with (
        time_machine.travel(now + timedelta(hours=2), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert grants.expire_due_grants(timezone.now()) == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (GrantStatus.REVOKED, GrantStatus.ACTIVE)
    assert "Another current grant still holds" in events("grant.removed", first)[0].details["note"]
    assert user_id in members(org, group.remote_id)

    with (
        time_machine.travel(now + timedelta(hours=4), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert grants.expire_due_grants(timezone.now()) == 1
    second.refresh_from_db()
    assert second.status == GrantStatus.REVOKED
    assert user_id not in members(org, group.remote_id)


def test_a_grant_that_does_not_expire_is_left_alone(
    org, membership, django_capture_on_commit_callbacks
):
    user, group, user_id = membership
    made = grant(group, user, None, django_capture_on_commit_callbacks)
    with (
        time_machine.travel(timezone.now() + timedelta(days=3650), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert tasks.sweep()["expired"] == 0
    made.refresh_from_db()
    assert made.status == GrantStatus.ACTIVE
    assert user_id in members(org, group.remote_id)
    with django_capture_on_commit_callbacks(execute=True):
        grants.revoke_grant(made, actor=None, reason="Test over")
    assert user_id not in members(org, group.remote_id)
