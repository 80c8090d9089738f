"""The AWS app's sync runs in the admin: the page of their own that the app page and the
demo link to, the table the app page refreshes, and who or what asked for each run."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils.html import escape

from access.tests.test_admin import change_url
from aws_integration.choices import SyncKind
from aws_integration.models import AwsApp, SyncRun
from aws_integration.sync import services, tasks
from aws_integration.tests.sync_fixtures import make_app
from aws_integration.tests.test_admin_app import make_aws_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


@pytest.fixture
def app() -> AwsApp:
    return make_aws_app()


def runs_url(app: AwsApp) -> str:
    return reverse("admin:aws_integration_awsapp_sync_runs", args=[app.pk])


def list_url(app: AwsApp) -> str:
    return reverse("admin:aws_integration_syncrun_changelist") + f"?app__id__exact={app.pk}"


def test_the_sync_runs_link_opens_an_admin_page_with_title_and_breadcrumbs(admin_client, app):
    services.request_sync(app, requested_via=services.VIA_SCHEDULE, enqueue=False)

    page = admin_client.get(runs_url(app)).content.decode()

    assert "<title>Sync runs of Acme organization | Portcullis admin</title>" in page
    assert "<h1>Sync runs of Acme organization</h1>" in page
    assert '<div class="breadcrumbs">' in page
    assert f'<a href="{change_url(app)}">Acme organization</a>' in page
    assert "/static/admin/css/base.css" in page  # the admin's look
    assert "/static/aws_integration/admin.css" in page
    assert f'href="{list_url(app)}" id="all-sync-runs"' in page
    assert '<div id="sync-runs-body" data-active="true">' in page
    assert f'data-url="{runs_url(app)}?fragment=1"' in page


def test_the_app_page_refreshes_the_table_alone_and_links_every_run(admin_client, app):
    page = admin_client.get(change_url(app)).content.decode()
    assert f'<section id="sync-runs" data-url="{runs_url(app)}?fragment=1">' in page
    assert f'href="{list_url(app)}" id="all-sync-runs"' in page

    fragment = admin_client.get(runs_url(app) + "?fragment=1").content.decode()
    assert fragment.startswith('<div id="sync-runs-body"')
    assert "<title>" not in fragment


def test_the_runs_list_filtered_by_app_shows_that_apps_runs_only(admin_client, app):
    other = make_aws_app(name="Other organization", management_account_id="222222222222")
    mine = services.request_sync(app, enqueue=False)
    theirs = services.request_sync(other, enqueue=False)
    page = admin_client.get(list_url(app)).content.decode()
    assert f"/admin/aws_integration/syncrun/{mine.pk}/change/" in page
    assert f"/admin/aws_integration/syncrun/{theirs.pk}/change/" not in page


def requested_by_cell(admin_client, app: AwsApp, run: SyncRun) -> str:
    fragment = admin_client.get(runs_url(app) + "?fragment=1").content.decode()
    row = fragment.split(f">#{run.pk}</a>")[1].split("</tr>")[0]
    return row.split("<td>")[-2].split("</td>")[0]


def test_a_scheduled_run_says_schedule_and_one_asked_for_says_who(admin_client, app, personas):
    assert tasks.schedule_full_syncs() == 1
    scheduled = SyncRun.objects.get(app=app)
    assert requested_by_cell(admin_client, app, scheduled) == "schedule"

    SyncRun.objects.update(status="succeeded")
    by_admin = services.request_sync(app, actor=personas.admin, enqueue=False)
    assert requested_by_cell(admin_client, app, by_admin) == escape(str(personas.admin))


def test_the_demos_first_run_and_events_runs_are_not_called_scheduled(admin_client, app):
    demo = services.request_sync(app, requested_via=services.VIA_DEMO, enqueue=False)
    assert requested_by_cell(admin_client, app, demo) == escape(services.VIA_DEMO)
    events = SyncRun.objects.create(app=app, kind=SyncKind.EVENTS, status="succeeded")
    assert requested_by_cell(admin_client, app, events) == "CloudTrail events"
    # A run whose request named nothing (recorded before runs said what asked for them).
    SyncRun.objects.update(status="succeeded")
    unnamed = services.request_sync(app, enqueue=False)
    assert requested_by_cell(admin_client, app, unnamed) == "Portcullis"


def test_a_run_of_the_sync_command_says_so(admin_client, org):
    app = make_app(org)
    call_command("sync_aws", "--app", str(app.pk), stdout=StringIO(), verbosity=0)
    run = SyncRun.objects.get(app=app)
    assert requested_by_cell(admin_client, app, run) == "manage.py sync_aws"
