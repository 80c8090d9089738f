"""The assignment's transitions: each sets its status and the columns that go with it, on
the row and on the instance the engine holds."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest
from django.utils import timezone

from access.choices import AssignmentStatus
from access.models import AccessLevel, Assignment
from access.tests.factories import AccessLevelFactory
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db
people = count()


def assignment(status: AssignmentStatus = AssignmentStatus.ABSENT, **fields: object) -> Assignment:
    level: AccessLevel = AccessLevelFactory.create()
    return Assignment.objects.create(
        user=make_user(f"holder{next(people)}@example.com"),
        resource=level.resource,
        access_level=level,
        status=status,
        **fields,
    )


def stored(made: Assignment) -> Assignment:
    return Assignment.objects.get(pk=made.pk)


def test_a_failed_apply_over_what_aws_holds_leaves_it_held_to_apply_again() -> None:
    now = timezone.now()
    made = assignment(AssignmentStatus.APPLIED)
    made.mark_failed(
        now, operation="apply", error="Throttled", retry_at=now + timedelta(seconds=5), alert=False
    )
    row = stored(made)
    assert (row.status, row.attempts, row.last_error, row.next_attempt_at, row.alerted_at) == (
        AssignmentStatus.REAPPLY,
        1,
        "Throttled",
        now + timedelta(seconds=5),
        None,
    )
    assert made.status == AssignmentStatus.REAPPLY and made.attempts == 1


@pytest.mark.parametrize(
    ("before", "operation"),
    [
        (AssignmentStatus.ABSENT, "apply"),
        (AssignmentStatus.WAITING_FOR_USER, "apply"),
        (AssignmentStatus.APPLIED, "remove"),
        (AssignmentStatus.REAPPLY, "remove"),
    ],
)
def test_any_other_failure_is_failing_and_raises_the_alert_when_asked(
    before: AssignmentStatus, operation: str
) -> None:
    now = timezone.now()
    made = assignment(before, attempts=2)
    made.mark_failed(now, operation=operation, error="Denied", retry_at=now, alert=True)
    row = stored(made)
    assert (row.status, row.attempts, row.alerted_at) == (AssignmentStatus.FAILING, 3, now)


def test_success_clears_the_failure_and_a_removal_keeps_no_reapply() -> None:
    now = timezone.now()
    made = assignment(AssignmentStatus.REAPPLY, attempts=4, last_error="Denied", alerted_at=now)
    made.mark_applied(now, {"role_arn": "arn:aws:iam::1:role/x"})
    row = stored(made)
    assert (row.status, row.attempts, row.last_error, row.alerted_at, row.applied_at) == (
        AssignmentStatus.APPLIED,
        0,
        "",
        None,
        now,
    )
    assert row.driver_state == {"role_arn": "arn:aws:iam::1:role/x"}
    Assignment.objects.filter(pk=made.pk).request_reapply()
    stored(made).mark_removed(now, None)
    row = stored(made)
    assert (row.status, row.removed_at, row.driver_state) == (
        AssignmentStatus.ABSENT,
        now,
        {"role_arn": "arn:aws:iam::1:role/x"},
    )


def test_ending_a_shared_grant_keeps_a_reapply_asked_for_meanwhile() -> None:
    now = timezone.now()
    made = assignment(AssignmentStatus.APPLIED, attempts=1, last_error="Throttled")
    Assignment.objects.filter(pk=made.pk).request_reapply()
    made.mark_kept(now)
    row = stored(made)
    assert (row.status, row.attempts, row.last_error) == (AssignmentStatus.REAPPLY, 0, "")


def test_a_reapply_is_asked_only_of_what_aws_holds() -> None:
    held = [assignment(AssignmentStatus.APPLIED), assignment(AssignmentStatus.REAPPLY)]
    others = [
        assignment(AssignmentStatus.ABSENT),
        assignment(AssignmentStatus.WAITING_FOR_USER),
        assignment(AssignmentStatus.FAILING),
    ]
    assert Assignment.objects.all().request_reapply() == 2
    assert {stored(a).status for a in held} == {AssignmentStatus.REAPPLY}
    assert [stored(a).status for a in others] == [a.status for a in others]


def test_waiting_for_the_user_drops_the_planned_attempt() -> None:
    now = timezone.now()
    made = assignment(AssignmentStatus.ABSENT, next_attempt_at=now)
    made.mark_waiting(now, "No OIDC subject yet")
    row = stored(made)
    assert (row.status, row.last_error, row.next_attempt_at) == (
        AssignmentStatus.WAITING_FOR_USER,
        "No OIDC subject yet",
        None,
    )


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_maps_the_old_columns_to_the_status() -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("access", "0009_leases_in_one_table")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    app = old.get_model("access", "App").objects.create(name="Upgrade", provider="aws")
    resource = old.get_model("access", "Resource").objects.create(
        app=app, type="aws_account", remote_id="r", account_id="111111111111", name="r"
    )
    level = old.get_model("access", "AccessLevel").objects.create(
        resource=resource, remote_id="l", name="l"
    )
    users = old.get_model("access", "User").objects
    planned = timezone.now()
    rows = {
        "absent": {"state": "absent"},
        "applied": {"state": "present"},
        "reapply asked": {"state": "present", "reapply_requested": True},
        "retrying over AWS": {"state": "present", "attempts": 2, "next_attempt_at": planned},
        "waiting": {"state": "waiting"},
        "failing": {"state": "failed", "attempts": 3, "next_attempt_at": planned},
    }
    ids = {
        name: old.get_model("access", "Assignment")
        .objects.create(
            user=users.create(username=name, email=f"{name.replace(' ', '-')}@example.com"),
            resource=resource,
            access_level=level,
            **fields,
        )
        .pk
        for name, fields in rows.items()
    }
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    status = dict(Assignment.objects.values_list("pk", "status"))
    assert {name: status[pk] for name, pk in ids.items()} == {
        "absent": AssignmentStatus.ABSENT,
        "applied": AssignmentStatus.APPLIED,
        "reapply asked": AssignmentStatus.REAPPLY,
        "retrying over AWS": AssignmentStatus.REAPPLY,
        "waiting": AssignmentStatus.WAITING_FOR_USER,
        "failing": AssignmentStatus.FAILING,
    }
