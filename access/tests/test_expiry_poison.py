"""A grant whose ending keeps failing holds back neither the other expired grants nor the
engine: expiry ends the rest, logs the one, and tries it again at the next tick."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from access.choices import AssignmentStatus, GrantSource, GrantStatus
from access.models import AccessLevel, Assignment, Grant, User
from access.services import grants
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db


def expired_grant(personas, level: AccessLevel, user: User, minutes_ago: int) -> Grant:
    assignment = Assignment.objects.create(
        user=user, resource=personas.resource, access_level=level, status=AssignmentStatus.APPLIED
    )
    return Grant.objects.create(
        user=user,
        resource=personas.resource,
        access_level=level,
        assignment=assignment,
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
        starts_at=timezone.now() - timedelta(hours=1),
        expires_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_one_failing_grant_does_not_hold_back_the_others(personas, monkeypatch, caplog):
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ro", name="ReadOnly")
    # The first to expire is the one whose ending fails, every time.
    poison = expired_grant(personas, level, make_user("p@example.com"), minutes_ago=30)
    others = [
        expired_grant(personas, level, make_user(f"u{n}@example.com"), minutes_ago=20 - n)
        for n in range(3)
    ]
    real = grants._cancel_pending_extensions

    def failing(ended: list[Grant], now) -> None:
        if any(g.pk == poison.pk for g in ended):
            raise RuntimeError("this grant cannot be ended")
        real(ended, now)

    monkeypatch.setattr(grants, "_cancel_pending_extensions", failing)

    with caplog.at_level(logging.ERROR, logger="access.grants"):
        assert grants.expire_due_grants(timezone.now()) == 3
        # The next tick tries it again, and still ends nothing else by mistake.
        assert grants.expire_due_grants(timezone.now()) == 0

    assert Grant.objects.get(pk=poison.pk).status == GrantStatus.ACTIVE
    assert {g.status for g in Grant.objects.filter(pk__in=[g.pk for g in others])} == {
        GrantStatus.REVOKING
    }
    assert f"Expired grant {poison.pk} could not be ended" in caplog.text
