"""Asking for a sync: request_sync (the admin's "Sync now"), the django-q2 tasks, the
schedule, and ``manage.py sync_aws``."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import OrmQ

from access.choices import ResourceType
from audit.models import AuditEvent
from aws_integration.choices import SyncKind, SyncStatus
from aws_integration.models import SyncRun
from aws_integration.sync import services, tasks
from aws_integration.tests.sync_fixtures import live, make_app
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def app(org):
    return make_app(org)


def queued_task_args() -> list[tuple]:
    return [task.task["args"] for task in OrmQ.objects.all()]


# request_sync -----------------------------------------------------------------------------------
def test_request_sync_queues_a_run_and_its_task_once_the_transaction_commits(
    app, django_capture_on_commit_callbacks
):
    admin = make_user("ada@example.com")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = services.request_sync(app, actor=admin)
        assert queued_task_args() == []  # nothing before the commit

    for callback in callbacks:
        callback()
    assert run.status == SyncStatus.QUEUED
    assert run.kind == SyncKind.FULL
    assert run.requested_by == admin
    assert queued_task_args() == [(run.pk,)]
    assert OrmQ.objects.get().task["func"] == "aws_integration.sync.tasks.run_sync"
    event = AuditEvent.objects.get(action="sync.requested")
    assert event.actor_id == admin.pk
    assert event.target_id == str(run.pk)
    assert event.details == {"app": app.name, "kind": "full", "account_id": ""}


def test_request_sync_gives_back_the_run_already_queued(app, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = services.request_sync(app)
    with django_capture_on_commit_callbacks(execute=True):
        second = services.request_sync(app)

    assert second == first
    assert SyncRun.objects.count() == 1
    assert len(queued_task_args()) == 1


def test_an_account_sync_is_a_run_of_its_own(app):
    full = services.request_sync(app, enqueue=False)
    one = services.request_sync(app, account_id="123456789012", enqueue=False)

    assert one != full
    assert one.kind == SyncKind.ACCOUNT
    with pytest.raises(ValidationError):
        services.request_sync(app, account_id="12345", enqueue=False)


def test_a_run_whose_worker_died_is_failed_and_does_not_block_new_runs(app):
    stale = services.request_sync(app, enqueue=False)
    SyncRun.objects.filter(pk=stale.pk).update(
        status=SyncStatus.RUNNING, started_at=timezone.now() - timedelta(days=1)
    )

    fresh = services.request_sync(app, enqueue=False)

    stale.refresh_from_db()
    assert fresh != stale
    assert stale.status == SyncStatus.FAILED
    assert "stopped before it finished" in stale.message
    assert AuditEvent.objects.filter(action="sync.abandoned", target_id=str(stale.pk)).exists()


# Tasks ------------------------------------------------------------------------------------------
def test_the_run_sync_task_runs_the_queued_run(org, app):
    run = services.request_sync(app, enqueue=False)

    assert tasks.run_sync(run.pk) == SyncStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.status == SyncStatus.SUCCEEDED
    assert live(app, ResourceType.EC2_INSTANCE)


def test_the_schedule_queues_apps_whose_interval_has_passed(
    org, django_capture_on_commit_callbacks
):
    due = make_app(org, name="Due")
    recent = make_app(org, name="Recent")
    inactive = make_app(org, name="Inactive", is_active=False)
    busy = make_app(org, name="Busy")
    old = services.request_sync(due, enqueue=False)
    SyncRun.objects.filter(pk=old.pk).update(
        status=SyncStatus.SUCCEEDED, created_at=timezone.now() - timedelta(hours=2)
    )
    done = services.request_sync(recent, enqueue=False)
    SyncRun.objects.filter(pk=done.pk).update(status=SyncStatus.SUCCEEDED)
    services.request_sync(busy, enqueue=False)  # still queued

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.schedule_full_syncs() == 1

    queued = SyncRun.objects.filter(status=SyncStatus.QUEUED).exclude(app=busy)
    assert [run.app_id for run in queued] == [due.pk]
    assert len(queued_task_args()) == 1
    assert not SyncRun.objects.filter(app=inactive).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.schedule_full_syncs() == 0  # the due app's run is now queued


# The command -------------------------------------------------------------------------------------
def test_the_command_syncs_inline_and_prints_counts(org, app):
    out = StringIO()
    call_command("sync_aws", "--app", str(app.pk), stdout=out, stderr=StringIO(), verbosity=0)

    text = out.getvalue()
    run = SyncRun.objects.get(app=app)
    assert run.status == SyncStatus.SUCCEEDED
    assert f"{app.name}: Succeeded in" in text
    assert "aws_ec2_instance" in text and "created" in text
    assert not queued_task_args()  # run here, not queued for a worker

    again = StringIO()
    call_command("sync_aws", "--app", str(app.pk), stdout=again, verbosity=0)
    assert "No change." in again.getvalue()


def test_the_command_prints_the_issues_of_a_partial_run(org, app, aws_faults_kept):
    refused = org.accounts[0].account_id
    aws_faults_kept.deny_assume_role(app.role_arn(refused))
    out = StringIO()

    call_command("sync_aws", "--account", refused, stdout=out, verbosity=0)

    text = out.getvalue()
    assert "Succeeded with issues" in text
    assert f"issue {refused}/-/sts: AccessDenied" in text


def test_the_command_names_the_apps_when_the_id_is_unknown(app):
    with pytest.raises(CommandError, match=rf"No AWS app has id 999\. AWS apps: {app.pk} \("):
        call_command("sync_aws", "--app", "999")


def test_the_command_refuses_a_malformed_account_id(app):
    with pytest.raises(CommandError, match="--account '12-34'"):
        call_command("sync_aws", "--account", "12-34")


def test_the_command_says_when_there_is_nothing_to_sync(db):
    with pytest.raises(CommandError, match="no active AWS app"):
        call_command("sync_aws")


def test_the_command_fails_when_the_sync_fails(org, app, aws_faults_kept):
    aws_faults_kept.deny_assume_role(app.role_arn(org.management_account_id))
    out = StringIO()
    with pytest.raises(CommandError, match="The sync of Sync test organization failed"):
        call_command("sync_aws", stdout=out, verbosity=0)
    assert "Cannot assume the ingester role" in out.getvalue()
