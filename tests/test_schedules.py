"""The schedules every app declares in code become django-q2 Schedule rows, idempotently."""

from __future__ import annotations

import importlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from aws_integration.setup_checks import restore_schedules
from config import schedules

pytestmark = pytest.mark.django_db

EXPECTED = {
    "Portcullis: AWS full syncs": (
        "aws_integration.sync.tasks.schedule_full_syncs",
        Schedule.MINUTES,
        2,
    ),
    "Portcullis: AWS validations": (
        "aws_integration.setup_checks.run_all_validations",
        Schedule.DAILY,
        None,
    ),
    # Declared by access.
    "Portcullis: grant sweep": ("access.tasks.sweep", Schedule.MINUTES, 5),
}


def rows() -> list[tuple]:
    return sorted(
        Schedule.objects.values_list(
            "pk", "name", "func", "schedule_type", "minutes", "repeats", "next_run"
        )
    )


def test_migrate_installed_the_declared_schedules():
    # The test database was made by migrate, whose post_migrate installs them.
    installed = {
        s.name: (s.func, s.schedule_type, s.minutes)
        for s in Schedule.objects.filter(name__startswith="Portcullis: ")
    }
    assert installed == EXPECTED
    assert set(Schedule.objects.values_list("repeats", flat=True)) == {-1}


def test_installing_twice_leaves_the_same_rows():
    Schedule.objects.all().delete()
    first = schedules.install_schedules()
    before = rows()
    second = schedules.install_schedules()

    assert sorted(first.created) == sorted(EXPECTED)
    assert second.created == second.updated == second.removed == []
    assert sorted(second.unchanged) == sorted(EXPECTED)
    assert rows() == before
    assert len(before) == len(EXPECTED)


def test_it_corrects_a_drifted_schedule_and_keeps_its_next_run():
    next_run = timezone.now() + timedelta(seconds=30)
    polling = Schedule.objects.get(name="Portcullis: grant sweep")
    Schedule.objects.filter(pk=polling.pk).update(
        func="somewhere.else", minutes=30, repeats=2, next_run=next_run
    )

    result = schedules.install_schedules()

    polling.refresh_from_db()
    assert result.updated == ["Portcullis: grant sweep"]
    assert (polling.func, polling.minutes, polling.repeats) == ("access.tasks.sweep", 5, -1)
    assert polling.next_run == next_run


def test_it_removes_schedules_no_longer_declared_and_duplicates_but_not_others():
    Schedule.objects.create(
        name="Portcullis: retired task", func="old.task", schedule_type=Schedule.HOURLY
    )
    Schedule.objects.create(
        name="Portcullis: AWS validations",
        func="aws_integration.setup_checks.run_all_validations",
        schedule_type=Schedule.DAILY,
    )
    Schedule.objects.create(name="Nightly report", func="ops.report", schedule_type="D")

    result = schedules.install_schedules()

    assert result.removed == ["Portcullis: retired task"]
    assert Schedule.objects.filter(name="Portcullis: AWS validations").count() == 1
    assert Schedule.objects.filter(name="Nightly report").exists()


def test_the_command_installs_and_reports():
    Schedule.objects.filter(name="Portcullis: AWS full syncs").delete()
    out = StringIO()

    call_command("install_schedules", stdout=out)

    assert "Created: Portcullis: AWS full syncs" in out.getvalue()
    assert f"1 created, 0 updated, 0 removed, {len(EXPECTED) - 1} unchanged" in out.getvalue()
    assert Schedule.objects.filter(name="Portcullis: AWS full syncs").exists()


@pytest.mark.parametrize("func", [expected[0] for expected in EXPECTED.values()])
def test_each_scheduled_task_exists(func):
    module, name = func.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name))


def test_a_schedule_refuses_a_name_without_the_prefix_or_minutes_on_a_daily_schedule():
    with pytest.raises(ValueError, match="must start with"):
        schedules.Schedule("Sync", "x.y", schedules.DAILY)
    with pytest.raises(ValueError, match="minutes goes with the MINUTES type"):
        schedules.Schedule("Portcullis: x", "x.y", schedules.DAILY, minutes=5)


def test_it_brings_forward_a_postponed_next_run():
    """A next run beyond one period away could only be set by hand: it stops the task."""
    timer = Schedule.objects.get(name="Portcullis: grant sweep")
    Schedule.objects.filter(pk=timer.pk).update(next_run=timezone.now() + timedelta(days=365))

    result = schedules.install_schedules()

    timer.refresh_from_db()
    assert result.updated == ["Portcullis: grant sweep"]
    assert list(result.changes["Portcullis: grant sweep"]) == ["next_run"]
    assert timer.next_run <= timezone.now()


def test_restoring_audits_what_it_found_and_nothing_when_all_is_in_order():
    from audit.models import AuditEvent

    assert not restore_schedules().drifted
    assert not AuditEvent.objects.filter(action="schedules.restored").exists()
    Schedule.objects.filter(name="Portcullis: grant sweep").update(intended_date_kwarg="when")

    result = restore_schedules()

    assert result.updated == ["Portcullis: grant sweep"]
    event = AuditEvent.objects.get(action="schedules.restored")
    assert event.details["changes"] == {
        "Portcullis: grant sweep": {"intended_date_kwarg": ["when", None]}
    }


def test_restoring_removes_and_audits_a_schedule_not_declared_in_code():
    """One made in django-q2's admin before it became read-only runs any function."""
    from audit.models import AuditEvent

    Schedule.objects.create(
        name="Nightly report", func="os.system", args="'id'", schedule_type=Schedule.DAILY
    )

    result = restore_schedules()

    assert result.removed == ["Nightly report"]
    assert not Schedule.objects.filter(name="Nightly report").exists()
    assert set(Schedule.objects.values_list("name", flat=True)) == set(EXPECTED)
    event = AuditEvent.objects.get(action="schedules.restored")
    assert event.details["changes"]["Nightly report"] == {"func": ["os.system", None]}
