"""The AWS app in the admin: its form, its audit trail, and the page that connects it
(External ID, documents to paste, validations, sync runs and issues, and their buttons)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from access.models import Resource
from access.tests.test_admin import add_url, change_url, form_errors
from audit.models import AuditEvent
from aws_integration import services, setup_policies
from aws_integration.choices import Severity, SyncStatus, ValidationStatus
from aws_integration.models import AwsApp, SyncIssue, SyncRun, UnknownEventName, Validation

pytestmark = pytest.mark.django_db

NON_ADMINS = ("requester", "approver", "manager", "auditor", "outsider")
INSTANCE_ARN = "arn:aws:sso:::instance/ssoins-1234567890abcdef"


def valid_form(**overrides: str) -> dict[str, str]:
    data = {
        "name": "Acme organization",
        "management_account_id": "123456789012",
        "sqs_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/portcullis-events",
        "organization_management": "on",
        "identity_center_management": "on",
        "identity_center_region": "eu-west-1",
        "identity_center_instance_arn": INSTANCE_ARN,
        "identity_store_id": "d-1234567890",
        "access_portal_url": "https://d-1234567890.awsapps.com/start",
        "ingester_role_name": "PortcullisIngester",
        "regions": "eu-west-1, us-east-1",
        "full_sync_interval": "01:00:00",
        "_save": "Save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def make_aws_app(name: str = "Acme organization", **overrides: Any) -> AwsApp:
    values: dict[str, Any] = {
        "name": name,
        "management_account_id": "123456789012",
        "identity_center_management": True,
        "identity_center_region": "eu-west-1",
        "identity_center_instance_arn": INSTANCE_ARN,
        "identity_store_id": "d-1234567890",
        "access_portal_url": "https://d-1234567890.awsapps.com/start",
        "regions": ["eu-west-1"],
    }
    values.update(overrides)
    return AwsApp.objects.create(**values)


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


@pytest.fixture
def app() -> AwsApp:
    return make_aws_app()


# Adding and changing ---------------------------------------------------------------------
def test_the_add_form_has_exactly_the_fields_of_the_issue(admin_client):
    response = admin_client.get(add_url(AwsApp))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == [
        "name",
        "management_account_id",
        "ingester_role_name",
        "organization_management",
        "regions",
        "full_sync_interval",
        "identity_center_management",
        "identity_center_region",
        "identity_center_instance_arn",
        "identity_store_id",
        "access_portal_url",
        "sqs_queue_url",
    ]
    page = response.content.decode()
    assert page.count("Needed when IAM Identity Center management is on.") >= 4
    assert 'value="PortcullisIngester"' in page  # the default role name


def test_an_admin_adds_an_aws_app_and_the_creation_is_audited(admin_client, personas):
    response = admin_client.post(add_url(AwsApp), valid_form())
    assert response.status_code == 302, form_errors(response)
    app = AwsApp.objects.get(name="Acme organization")
    assert app.regions == ["eu-west-1", "us-east-1"]
    assert app.full_sync_interval == timedelta(hours=1)
    assert app.identity_store_id == "d-1234567890"
    (event,) = AuditEvent.objects.filter(action="aws_integration.awsapp.created")
    assert event.actor_id == personas.admin.pk
    assert event.target_id == str(app.pk)
    assert event.details["after"]["management_account_id"] == "123456789012"
    assert event.details["after"]["regions"] == ["eu-west-1", "us-east-1"]


def test_identity_center_fields_may_stay_empty_when_the_toggle_is_off(admin_client):
    data = valid_form(
        identity_center_management=None,
        identity_center_region="",
        identity_center_instance_arn="",
        identity_store_id="",
        access_portal_url="",
        sqs_queue_url="",
        regions="",
    )
    response = admin_client.post(add_url(AwsApp), data)
    assert response.status_code == 302, form_errors(response)
    app = AwsApp.objects.get()
    assert not app.identity_center_management and app.regions == []


def test_identity_center_fields_are_required_when_the_toggle_is_on(admin_client):
    data = valid_form(
        identity_center_region="",
        identity_center_instance_arn="",
        identity_store_id="",
        access_portal_url="",
    )
    response = admin_client.post(add_url(AwsApp), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    for field in (
        "identity_center_region",
        "identity_center_instance_arn",
        "identity_store_id",
        "access_portal_url",
    ):
        assert errors[field] == ["Required when IAM Identity Center management is on."], field
    assert not AwsApp.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="aws_integration.awsapp").exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("management_account_id", "12345", "“12345” is not an AWS account ID"),
        ("sqs_queue_url", "https://example.com/queue", "is not an SQS queue URL"),
        (
            "sqs_queue_url",
            "https://sqs.eu-west-1.amazonaws.com/portcullis-events",
            "has no account ID and queue name in its path",
        ),
        ("identity_center_region", "moon-base-1", "“moon-base-1” is not an AWS region name"),
        ("identity_center_instance_arn", "ssoins-123", "is not an Identity Center instance ARN"),
        ("identity_store_id", "store-1", "“store-1” is not an identity store ID"),
        ("access_portal_url", "https://example.com/start", "is not an AWS access portal URL"),
        ("ingester_role_name", "bad role!", "“bad role!” is not an IAM role name"),
        ("regions", "eu-west-1, mars", "“mars” is not an AWS region name"),
        ("full_sync_interval", "00:01:00", "A full sync at most every 5 minutes"),
        ("full_sync_interval", "soon", "Enter a valid duration."),
        ("name", "", "This field is required."),
    ],
)
def test_each_invalid_field_says_what_is_wrong(admin_client, field, value, message):
    response = admin_client.post(add_url(AwsApp), valid_form(**{field: value}))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {field}, errors
    assert any(message in error for error in errors[field]), errors[field]
    assert escape(message) in response.content.decode() or message in response.content.decode()
    assert not AwsApp.objects.exists()


def test_an_edit_is_audited_with_before_and_after(admin_client, app, personas):
    data = valid_form(name=app.name, management_account_id="210987654321", regions="us-west-2")
    response = admin_client.post(change_url(app), data)
    assert response.status_code == 302, form_errors(response)
    (event,) = AuditEvent.objects.filter(action="aws_integration.awsapp.updated")
    assert event.actor_id == personas.admin.pk
    assert event.details["changes"]["management_account_id"] == {
        "from": "123456789012",
        "to": "210987654321",
    }
    assert event.details["changes"]["regions"] == {"from": ["eu-west-1"], "to": ["us-west-2"]}
    assert event.details["before"]["management_account_id"] == "123456789012"
    assert event.details["after"]["management_account_id"] == "210987654321"


def test_the_regions_field_shows_the_list_as_one_line(admin_client):
    app = make_aws_app(regions=["eu-west-1", "us-east-1"])
    page = admin_client.get(change_url(app)).content.decode()
    assert 'value="eu-west-1, us-east-1"' in page


# Validations on save ---------------------------------------------------------------------
# Transactional: the checks run when the admin's transaction commits, as in production,
# so their message reaches the page the admin is sent to.
@pytest.mark.django_db(transaction=True)
def test_validations_run_after_the_save_is_committed(admin_client, aws):
    response = admin_client.post(add_url(AwsApp), valid_form(sqs_queue_url=""), follow=True)
    app = AwsApp.objects.get()
    assert app.validations.filter(key="management.assume_role").exists()
    texts = [str(m) for m in response.context["messages"]]
    assert any(t.startswith("Validations of “Acme organization”:") for t in texts), texts


@pytest.mark.django_db(transaction=True)
def test_a_failure_to_run_validations_is_a_message_and_the_app_is_saved(admin_client, monkeypatch):
    def broken(app: AwsApp, **kwargs: Any) -> list[Validation]:
        raise RuntimeError("the network is down")

    monkeypatch.setattr("aws_integration.setup_checks.run_validations", broken)
    response = admin_client.post(add_url(AwsApp), valid_form(), follow=True)
    assert response.status_code == 200
    assert AwsApp.objects.filter(name="Acme organization").exists()
    texts = [str(m) for m in response.context["messages"]]
    assert "Validations could not run: the network is down" in texts


# The app page --------------------------------------------------------------------------------
def test_the_app_page_shows_the_external_id_and_every_document_with_copy_buttons(
    admin_client, app, settings
):
    settings.PORTCULLIS_AWS_PRINCIPAL_ARN = "arn:aws:iam::999999999999:role/portcullis-web"
    aws_settings = services.get_aws_settings()
    response = admin_client.get(change_url(app))
    page = response.content.decode()
    assert f'<code id="external-id-value">{aws_settings.external_id}</code>' in page
    assert 'data-copy="external-id-value"' in page
    for document in setup_policies.documents(app, aws_settings):
        assert f'<pre id="{document["key"]}-text">{escape(document["text"])}</pre>' in page
        assert f'data-copy="{document["key"]}-text"' in page
    assert escape(f'"sts:ExternalId": "{aws_settings.external_id}"') in page
    assert "arn:aws:iam::123456789012:role/portcullis/*" in page
    assert 'id="principal-missing"' not in page
    assert reverse("admin:aws_integration_awssettings_regenerate_external_id") in page


def test_the_app_page_lists_what_the_policy_cannot_narrow_with_the_reason(admin_client, app):
    page = admin_client.get(change_url(app)).content.decode()
    assert 'id="unscoped-permissions"' in page
    limits = setup_policies.unscoped_permissions(app)
    assert limits
    for limit in limits:
        assert escape(limit["what"]) in page
        assert escape(limit["why"]) in page
    assert "<code>portcullis:requestable=true</code>" in page


def test_without_the_principal_setting_the_page_warns_and_shows_a_placeholder(
    admin_client, app, settings
):
    settings.PORTCULLIS_AWS_PRINCIPAL_ARN = ""
    page = admin_client.get(change_url(app)).content.decode()
    assert 'id="principal-missing"' in page
    assert "PORTCULLIS_AWS_PRINCIPAL_ARN is not set." in page
    assert setup_policies.PRINCIPAL_PLACEHOLDER in page


def test_the_app_page_shows_validations_failed_first_with_the_missing_actions(admin_client, app):
    Validation.objects.create(
        app=app,
        key="a.passed",
        name="Read the organization",
        why="Sync reads it.",
        status=ValidationStatus.PASSED,
        severity=Severity.HIGH,
    )
    Validation.objects.create(
        app=app,
        key="z.failed",
        name="Read member account 210987654321",
        why="Sync reads every member account.",
        status=ValidationStatus.FAILED,
        severity=Severity.CRITICAL,
        details={
            "missing_actions": ["ec2:DescribeInstances", "eks:ListClusters"],
            "message": "User is not authorized to perform: ec2:DescribeInstances",
            "checked_actions": ["iam:ListRoles"],
        },
    )
    page = admin_client.get(change_url(app)).content.decode()
    failed = page.index("Read member account 210987654321")
    assert failed < page.index("Read the organization")
    assert '<tr class="validation-failed">' in page and '<tr class="validation-passed">' in page
    assert '<span class="portcullis-status status-failed">Failed</span>' in page
    assert "ec2:DescribeInstances, eks:ListClusters" in page
    assert "User is not authorized to perform: ec2:DescribeInstances" in page
    assert "Critical" in page


def test_the_app_page_shows_sync_issues_unresolved_first(admin_client, app):
    now = timezone.now()
    SyncIssue.objects.create(
        app=app,
        scope="210987654321/eu-west-1/ec2",
        code="AccessDenied",
        message="Old problem, fixed since",
        first_seen_at=now - timedelta(days=2),
        last_seen_at=now,
        resolved_at=now,
    )
    SyncIssue.objects.create(
        app=app,
        scope="210987654321/eu-west-1/rds",
        code="Throttling",
        message="Still throttled",
        first_seen_at=now - timedelta(days=1),
        last_seen_at=now - timedelta(hours=1),
        occurrences=7,
    )
    page = admin_client.get(change_url(app)).content.decode()
    assert page.index("Still throttled") < page.index("Old problem, fixed since")
    assert "210987654321/eu-west-1/rds" in page
    assert "<td>7</td>" in page


def test_the_app_page_counts_unknown_events_per_name_in_a_short_table(admin_client, app):
    for i in range(12):
        UnknownEventName.objects.create(
            app=app, source="s3.amazonaws.com", name=f"Call{i:02d}", count=100 + i
        )
    UnknownEventName.objects.create(
        app=make_aws_app("other"), source="s3.amazonaws.com", name="NotThisApp", count=999
    )
    page = admin_client.get(change_url(app)).content.decode()
    section = page[page.index('id="unknown-events"') :]
    assert section.index("Call11") < section.index("Call02")  # the most frequent first
    assert "<td>111</td>" in section
    assert "Call01" not in section and "Call00" not in section  # ten names shown
    assert "… and 2 more names" in section
    assert "NotThisApp" not in page


def test_the_app_page_says_when_no_unknown_event_arrived(admin_client, app):
    page = admin_client.get(change_url(app)).content.decode()
    assert "No event the queue delivered was one Portcullis does not follow." in page


def test_a_running_sync_shows_its_progress_and_the_page_polls_for_it(admin_client, app):
    SyncRun.objects.create(
        app=app,
        status=SyncStatus.RUNNING,
        started_at=timezone.now(),
        progress_done=3,
        progress_total=10,
    )
    page = admin_client.get(change_url(app)).content.decode()
    assert '<progress class="portcullis-progress" value="30" max="100"' in page
    assert 'data-active="true"' in page
    fragment = admin_client.get(reverse("admin:aws_integration_awsapp_sync_runs", args=[app.pk]))
    assert fragment.status_code == 200
    assert '<div id="sync-runs-body" data-active="true">' in fragment.content.decode()
    SyncRun.objects.update(
        status=SyncStatus.SUCCEEDED, finished_at=timezone.now(), progress_done=10
    )
    fragment = admin_client.get(reverse("admin:aws_integration_awsapp_sync_runs", args=[app.pk]))
    assert '<div id="sync-runs-body" data-active="false">' in fragment.content.decode()


# Buttons -----------------------------------------------------------------------------------
def refresh_url(app: AwsApp) -> str:
    return reverse("admin:aws_integration_awsapp_refresh_validations", args=[app.pk])


def sync_now_url(app: AwsApp) -> str:
    return reverse("admin:aws_integration_awsapp_sync_now", args=[app.pk])


def test_refresh_validations_runs_them_and_reports(admin_client, app, aws, personas):
    response = admin_client.post(refresh_url(app), follow=True)
    assert response.redirect_chain[-1][0] == change_url(app)
    assert app.validations.filter(key="management.assume_role").exists()
    texts = [str(m) for m in response.context["messages"]]
    assert any(t.startswith("Validations of “Acme organization”:") for t in texts), texts
    event = AuditEvent.objects.filter(action="validations.checked").latest("id")
    assert event.actor_id == personas.admin.pk


@pytest.mark.parametrize("url", [refresh_url, sync_now_url])
def test_the_buttons_refuse_get(admin_client, app, url):
    assert admin_client.get(url(app)).status_code == 405
    assert not app.validations.exists() and not app.sync_runs.exists()


@pytest.mark.parametrize("url", [refresh_url, sync_now_url])
def test_the_buttons_answer_404_for_an_unknown_app(admin_client, url):
    missing = AwsApp(pk=987654)
    assert admin_client.post(url(missing)).status_code == 404


def test_sync_now_queues_a_run_requested_by_the_admin(admin_client, app, personas):
    response = admin_client.post(sync_now_url(app), follow=True)
    run = SyncRun.objects.get(app=app)
    assert run.status == SyncStatus.QUEUED
    assert run.requested_by == personas.admin
    texts = [str(m) for m in response.context["messages"]]
    assert f"Sync of “{app}” queued (run {run.pk}); its progress shows below." in texts


# Who may ----------------------------------------------------------------------------------------
def app_pages(app: AwsApp) -> list[str]:
    return [
        reverse("admin:aws_integration_awsapp_changelist"),
        add_url(AwsApp),
        change_url(app),
        reverse("admin:aws_integration_awsapp_sync_runs", args=[app.pk]),
    ]


def test_the_app_pages_render_for_the_admin(admin_client, app):
    for url in app_pages(app):
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.parametrize("persona", NON_ADMINS)
def test_the_app_pages_and_buttons_are_refused_to_everyone_else(client, personas, app, persona):
    client.force_login(getattr(personas, persona))
    for url in app_pages(app):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
    for url in (refresh_url(app), sync_now_url(app), change_url(app)):
        response = client.post(url, valid_form(name="Taken over"))
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
    assert not app.validations.exists() and not app.sync_runs.exists()
    assert AwsApp.objects.get().name == "Acme organization"


def test_anonymous_visitors_are_sent_to_log_in(client, app):
    for url in app_pages(app):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_the_app_list_costs_the_same_queries_for_2_and_20_apps(
    admin_client, django_assert_max_num_queries
):
    url = reverse("admin:aws_integration_awsapp_changelist")
    for i in range(2):
        app = make_aws_app(f"org-{i}")
        SyncRun.objects.create(app=app, status=SyncStatus.SUCCEEDED)
    admin_client.get(url)
    with django_assert_max_num_queries(12) as small:
        assert admin_client.get(url).status_code == 200
    for i in range(2, 20):
        app = make_aws_app(f"org-{i}")
        SyncRun.objects.create(app=app, status=SyncStatus.FAILED)
        Validation.objects.create(
            app=app, key="k", name="n", why="w", status="failed", severity="high"
        )
    with django_assert_max_num_queries(12) as large:
        response = admin_client.get(url)
    assert len(small.captured_queries) == len(large.captured_queries)
    assert len(response.context["cl"].result_list) == 20
    assert "status-failed" in response.content.decode()


def test_deleting_an_app_is_audited(admin_client, app, personas):
    resource = Resource.objects.create(app=app, type="aws_account", remote_id="1", name="dev")
    url = reverse("admin:aws_integration_awsapp_delete", args=[app.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not AwsApp.objects.filter(pk=app.pk).exists()
    (event,) = AuditEvent.objects.filter(action="aws_integration.awsapp.deleted")
    assert event.actor_id == personas.admin.pk
    assert event.details["before"]["management_account_id"] == "123456789012"
    # What went with it: its inventory, not the app's own parent row.
    cascaded = event.details["cascaded"]
    assert [row["id"] for row in cascaded["access.resource"]] == [resource.pk]
    assert "access.app" not in cascaded
