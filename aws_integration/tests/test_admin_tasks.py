"""The django-q2 admin is read-only: an admin sees schedules, queued tasks, results and
failures, and can add, change, delete or resubmit none of them."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success

pytestmark = pytest.mark.django_db

GRANT_TIMER = "Portcullis: grant sweep"


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


def schedule_rows() -> list[tuple]:
    return sorted(Schedule.objects.values_list("pk", "name", "func", "args", "repeats", "next_run"))


@pytest.fixture
def failure() -> Failure:
    now = timezone.now()
    return Failure.objects.create(
        id="a" * 32,
        name="failed-task",
        func="access.tasks.sweep",
        started=now,
        stopped=now,
        success=False,
        result="boom",
    )


@pytest.fixture
def queued() -> OrmQ:
    return OrmQ.objects.create(key="portcullis", payload="payload", lock=timezone.now())


def test_an_admin_sees_schedules_queue_results_and_failures(admin_client, failure, queued):
    timer = Schedule.objects.get(name=GRANT_TIMER)
    now = timezone.now()
    success = Success.objects.create(
        id="b" * 32,
        name="ok-task",
        func="access.tasks.sweep",
        started=now,
        stopped=now,
        success=True,
    )
    for url in (
        reverse("admin:django_q_schedule_changelist"),
        reverse("admin:django_q_schedule_change", args=[timer.pk]),
        reverse("admin:django_q_failure_changelist"),
        reverse("admin:django_q_failure_change", args=[failure.pk]),
        reverse("admin:django_q_success_change", args=[success.pk]),
        reverse("admin:django_q_ormq_changelist"),
        reverse("admin:django_q_ormq_change", args=[queued.pk]),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert 'name="_save"' not in response.content.decode(), url
    changelist = admin_client.get(reverse("admin:django_q_schedule_changelist")).content.decode()
    assert "access.tasks.sweep" in changelist
    assert reverse("admin:django_q_schedule_add") not in changelist


def test_an_admin_cannot_add_a_schedule(admin_client):
    before = schedule_rows()

    response = admin_client.post(
        reverse("admin:django_q_schedule_add"),
        {
            "name": "innocent",
            "func": "os.system",
            "args": "'touch /tmp/owned'",
            "schedule_type": "O",
            "repeats": "-1",
            "next_run_0": "2026-01-01",
            "next_run_1": "00:00:00",
        },
    )

    assert response.status_code == 403
    assert schedule_rows() == before
    assert not Schedule.objects.filter(func="os.system").exists()


def test_an_admin_cannot_change_pause_or_delete_the_grant_timer(admin_client):
    timer = Schedule.objects.get(name=GRANT_TIMER)
    before = schedule_rows()

    changed = admin_client.post(
        reverse("admin:django_q_schedule_change", args=[timer.pk]),
        {
            "name": GRANT_TIMER,
            "func": "os.system",
            "schedule_type": "I",
            "minutes": "1",
            "repeats": "0",
            "next_run_0": "2099-01-01",
            "next_run_1": "00:00:00",
        },
    )
    deleted = admin_client.post(
        reverse("admin:django_q_schedule_delete", args=[timer.pk]), {"post": "yes"}
    )
    bulk = admin_client.post(
        reverse("admin:django_q_schedule_changelist"),
        {"action": "delete_selected", "_selected_action": [timer.pk], "post": "yes"},
    )

    assert changed.status_code == 403
    assert deleted.status_code == 403
    assert bulk.status_code in (200, 302, 403)
    assert schedule_rows() == before


def test_an_admin_cannot_change_or_delete_a_queued_task(admin_client, queued):
    changed = admin_client.post(
        reverse("admin:django_q_ormq_change", args=[queued.pk]),
        {"key": "portcullis", "lock_0": "2026-01-01", "lock_1": "00:00:00"},
    )
    deleted = admin_client.post(
        reverse("admin:django_q_ormq_delete", args=[queued.pk]), {"post": "yes"}
    )

    assert changed.status_code == 403
    assert deleted.status_code == 403
    assert OrmQ.objects.filter(pk=queued.pk, key="portcullis", payload="payload").exists()


def test_an_admin_cannot_resubmit_or_delete_a_failure(admin_client, failure):
    queued_before = OrmQ.objects.count()

    resubmitted = admin_client.post(
        reverse("admin:django_q_failure_changelist"),
        {"action": "resubmit_task", "_selected_action": [failure.pk]},
    )
    deleted = admin_client.post(
        reverse("admin:django_q_failure_delete", args=[failure.pk]), {"post": "yes"}
    )

    assert resubmitted.status_code in (200, 302)
    assert deleted.status_code == 403
    assert Failure.objects.filter(pk=failure.pk).exists()
    assert OrmQ.objects.count() == queued_before
