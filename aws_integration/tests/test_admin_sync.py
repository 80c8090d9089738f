"""Sync runs, sync issues, bad event messages and validations in the admin: read-only
lists for the admin, refused to everyone else, with a bounded number of queries; issues
resolved by the admin's actions, each with its audit event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from access.tests.test_admin import change_url, changelist
from audit.models import AuditEvent
from aws_integration.choices import SyncStatus
from aws_integration.models import AwsApp, BadEventMessage, SyncIssue, SyncRun, Validation
from aws_integration.sync import services as sync_services
from aws_integration.tests.test_admin_app import NON_ADMINS, make_aws_app

pytestmark = pytest.mark.django_db

MODELS = (SyncRun, SyncIssue, Validation, BadEventMessage)
SECRET_BODY = '{"detail": {"accountId": "999988887777", "secret": "account data"}}'
MAX_LIST_QUERIES = 12


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


def make_rows(app: AwsApp, n: int, *, prefix: str) -> None:
    now = timezone.now()
    for i in range(n):
        SyncRun.objects.create(
            app=app,
            status=SyncStatus.SUCCEEDED,
            started_at=now - timedelta(minutes=5),
            finished_at=now,
            progress_done=10,
            progress_total=10,
            counts={"ec2_instance": {"created": 2, "updated": 1, "deleted": 0}},
            requested_by=None,
        )
        issue = SyncIssue.objects.create(
            app=app, scope=f"{prefix}{i:012d}/eu-west-1/ec2", code="AccessDenied", message="no"
        )
        BadEventMessage.objects.create(
            app=app,
            issue=issue,
            code="not_json",
            message_id=f"{prefix}-{i}",
            body=SECRET_BODY,
            body_bytes=len(SECRET_BODY),
            error="The message is not JSON.",
        )
        Validation.objects.create(
            app=app,
            key=f"{prefix}.{i}",
            name=f"Check {prefix}{i}",
            why="Needed.",
            status="failed",
            severity="high",
            details={"missing_actions": ["ec2:DescribeInstances"]},
        )


@pytest.fixture
def rows() -> dict[str, object]:
    app = make_aws_app()
    make_rows(app, 1, prefix="a")
    return {
        "app": app,
        "run": SyncRun.objects.get(),
        "issue": SyncIssue.objects.get(),
        "validation": Validation.objects.get(),
        "bad_message": BadEventMessage.objects.get(),
    }


def pages(rows: dict[str, object]) -> list[str]:
    return [changelist(m) for m in MODELS] + [
        change_url(rows["run"]),
        change_url(rows["issue"]),
        change_url(rows["validation"]),
        change_url(rows["bad_message"]),
    ]


def test_the_lists_and_pages_render_for_the_admin(admin_client, rows):
    for url in pages(rows):
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.parametrize("persona", NON_ADMINS)
def test_the_lists_and_pages_are_refused_to_everyone_else(client, personas, rows, persona):
    client.force_login(getattr(personas, persona))
    for url in pages(rows):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
        refused = client.get(response["Location"])
        assert refused.status_code == 403
        assert "999988887777" not in response.content.decode() + refused.content.decode()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_nobody_adds_changes_or_deletes_these_rows(admin_client, rows, model):
    obj = model.objects.get()
    opts = model._meta
    assert (
        admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code
        == 403
    )
    delete = reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[obj.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    page = admin_client.get(change_url(obj)).content.decode()
    assert 'name="_save"' not in page  # a view-only page
    assert model.objects.filter(pk=obj.pk).exists()


def test_the_sync_run_list_shows_status_progress_counts_and_duration(admin_client, rows):
    SyncRun.objects.create(
        app=rows["app"], status=SyncStatus.RUNNING, progress_done=1, progress_total=4
    )
    page = admin_client.get(changelist(SyncRun)).content.decode()
    assert '<span class="portcullis-status status-running">Running</span>' in page
    assert '<progress class="portcullis-progress" value="25" max="100"' in page
    assert "2 created, 1 updated, 0 deleted" in page
    assert "5 min 00 s" in page
    running = admin_client.get(changelist(SyncRun), {"status__exact": "running"})
    assert [r.status for r in running.context["cl"].result_list] == ["running"]


def test_a_running_sync_page_reloads_itself_and_a_finished_one_does_not(admin_client, rows):
    running = SyncRun.objects.create(app=rows["app"], status=SyncStatus.RUNNING)
    assert '<meta http-equiv="refresh" content="3">' in (
        admin_client.get(change_url(running)).content.decode()
    )
    assert 'http-equiv="refresh"' not in admin_client.get(change_url(rows["run"])).content.decode()


def test_sync_issues_list_unresolved_first_and_filter_by_resolution(admin_client, rows):
    SyncIssue.objects.create(
        app=rows["app"],
        scope="210987654321/eu-west-1/rds",
        code="Gone",
        message="fixed",
        resolved_at=timezone.now(),
        last_seen_at=timezone.now() + timedelta(hours=1),
    )
    listed = admin_client.get(changelist(SyncIssue)).context["cl"].result_list
    assert [i.resolved_at is None for i in listed] == [True, False]
    resolved = admin_client.get(changelist(SyncIssue), {"resolved": "yes"})
    assert [i.code for i in resolved.context["cl"].result_list] == ["Gone"]
    unresolved = admin_client.get(changelist(SyncIssue), {"resolved": "no"})
    assert [i.code for i in unresolved.context["cl"].result_list] == ["AccessDenied"]


def test_the_validation_list_names_the_missing_actions(admin_client, rows):
    page = admin_client.get(changelist(Validation)).content.decode()
    assert "<code>ec2:DescribeInstances</code>" in page
    assert '<span class="portcullis-status status-failed">Failed</span>' in page


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_each_list_costs_the_same_queries_for_5_and_60_rows(
    admin_client, model, django_assert_max_num_queries
):
    url = changelist(model)
    first = make_aws_app("first")
    make_rows(first, 5, prefix="a")
    admin_client.get(url)
    with django_assert_max_num_queries(MAX_LIST_QUERIES) as small:
        assert admin_client.get(url).status_code == 200
    second = make_aws_app("second")
    make_rows(second, 55, prefix="b")
    with django_assert_max_num_queries(MAX_LIST_QUERIES) as large:
        response = admin_client.get(url)
    assert len(small.captured_queries) == len(large.captured_queries)
    assert len(response.context["cl"].result_list) == 50  # one page


# Bad messages -----------------------------------------------------------------------------
def test_the_admin_reads_a_bad_message_body_on_its_page_and_not_in_the_list(admin_client, rows):
    page = admin_client.get(change_url(rows["bad_message"])).content.decode()
    assert "999988887777" in page
    assert "The message is not JSON." in page
    listed = admin_client.get(changelist(BadEventMessage)).content.decode()
    assert "a-0" in listed
    assert "999988887777" not in listed


def test_an_issue_links_to_its_bad_messages_only(admin_client, rows):
    other = SyncIssue.objects.create(app=rows["app"], scope="events", code="not_json", message="x")
    BadEventMessage.objects.create(
        app=rows["app"], issue=other, code="not_json", message_id="elsewhere", error="x"
    )
    page = admin_client.get(change_url(rows["issue"])).content.decode()
    link = f"{changelist(BadEventMessage)}?issue__exact={rows['issue'].pk}"
    assert link.replace("&", "&amp;") in page
    listed = admin_client.get(link).context["cl"].result_list
    assert [m.message_id for m in listed] == ["a-0"]


# Resolving issues -------------------------------------------------------------------------
def resolve(client, action: str, *issues: SyncIssue):
    return client.post(
        changelist(SyncIssue),
        {"action": action, "_selected_action": [i.pk for i in issues], "index": "0"},
    )


@pytest.fixture
def issues(rows) -> dict[str, SyncIssue]:
    app, other_app = rows["app"], make_aws_app("other")

    def issue(app: AwsApp, scope: str, code: str) -> SyncIssue:
        return SyncIssue.objects.create(
            app=app, scope=scope, code=code, message="It began: 999988887777"
        )

    return {
        "denied_a": rows["issue"],
        "denied_b": issue(app, "210987654321/eu-west-1/ec2", "AccessDenied"),
        "throttled": issue(app, "210987654321/eu-west-1/rds", "Throttling"),
        "other_app": issue(other_app, "210987654321/eu-west-1/ec2", "AccessDenied"),
    }


def open_codes(issues: dict[str, SyncIssue]) -> set[str]:
    return {
        name
        for name, issue in issues.items()
        if SyncIssue.objects.get(pk=issue.pk).resolved_at is None
    }


def test_an_admin_resolves_the_selected_issues_each_with_its_audit_event(
    admin_client, personas, issues
):
    response = resolve(admin_client, "resolve_selected", issues["denied_a"], issues["throttled"])

    assert response.status_code == 302
    assert open_codes(issues) == {"denied_b", "other_app"}
    events = AuditEvent.objects.filter(action="sync.issue_resolved").order_by("id")
    assert [e.target_id for e in events] == [
        str(issues["denied_a"].pk),
        str(issues["throttled"].pk),
    ]
    for event in events:
        assert event.actor_id == personas.admin.pk
        assert event.details["reason"] == "resolved by an admin"
        # An issue's message can quote a queue message: auditors read events, not bodies.
        assert "999988887777" not in str(event.details) + event.target_label


def test_resolving_a_kind_resolves_every_open_issue_of_that_app_and_code(admin_client, issues):
    resolve(admin_client, "resolve_same_kind", issues["denied_a"])

    assert open_codes(issues) == {"throttled", "other_app"}
    assert AuditEvent.objects.filter(action="sync.issue_resolved").count() == 2


def test_resolving_resolved_issues_changes_and_audits_nothing(admin_client, issues):
    resolve(admin_client, "resolve_selected", issues["throttled"])
    resolve(admin_client, "resolve_selected", issues["throttled"])

    assert AuditEvent.objects.filter(action="sync.issue_resolved").count() == 1


def test_a_resolution_and_its_audit_events_are_one_transaction(admin_client, issues, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("the audit log is unavailable")

    monkeypatch.setattr(sync_services, "record_events", refuse)
    with pytest.raises(RuntimeError):
        resolve(admin_client, "resolve_selected", issues["denied_a"])

    assert "denied_a" in open_codes(issues)


def test_the_resolve_actions_refuse_a_get(admin_client, issues):
    response = admin_client.get(
        changelist(SyncIssue),
        {"action": "resolve_selected", "_selected_action": issues["denied_a"].pk},
    )
    assert response.status_code in (200, 302)  # the list (or its error redirect), no action
    assert "denied_a" in open_codes(issues)


@pytest.mark.parametrize("persona", NON_ADMINS)
def test_nobody_else_resolves_issues(client, personas, issues, persona):
    client.force_login(getattr(personas, persona))
    response = resolve(client, "resolve_same_kind", issues["denied_a"])

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert open_codes(issues) == set(issues)
    assert not AuditEvent.objects.filter(action="sync.issue_resolved").exists()
