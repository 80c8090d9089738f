"""`manage.py standin_change`: a real change in the stand-in AWS (moto over HTTP), its
CloudTrail event sent to the app's queue, and the poller bringing it into the inventory."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from access.choices import GrantSource, GrantStatus, ResourceType
from access.models import Grant, Resource
from audit.models import AuditEvent
from aws_integration import clients
from aws_integration.choices import SyncKind, SyncStatus
from aws_integration.events.poller import poll_queue
from aws_integration.models import AwsApp, SyncRun
from aws_integration.sync import engine
from aws_integration.sync import services as sync_services
from demo import seed
from demo.aws_app import DEMO_QUEUE_NAME, create_demo_queue, ensure_demo_aws_app
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

REGION = "us-east-1"
PERSON = seed.Person("pat@demo.portcullis.test", "Pat", "Person", groups=("Engineering",))
SMALL_SEED = seed.SeedSize.minimal("standin-change", idc_groups=2)


@pytest.fixture
def org(aws) -> seed.SeedResult:
    return seed.seed_organization(SMALL_SEED, region=REGION, people=[PERSON])


@pytest.fixture
def app(org) -> AwsApp:
    """The demo's app, with the demo's queue, as `manage.py demo` sets them up."""
    app, _ = ensure_demo_aws_app(org, sqs_queue_url=create_demo_queue(org))
    return app


def change(*args: str) -> str:
    out = StringIO()
    call_command("standin_change", *args, stdout=out)
    return out.getvalue()


def poll(app: AwsApp) -> dict[str, int]:
    return poll_queue(app, max_seconds=30, wait_seconds=0)


def queued_bodies(app: AwsApp) -> list[dict]:
    """What is on the queue, read and left there (visibility 0)."""
    sqs = clients.client(
        "sqs", session=clients.make_session(seed.STANDIN_CREDENTIALS, region=REGION)
    )
    received = sqs.receive_message(
        QueueUrl=app.sqs_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    )
    return [json.loads(m["Body"]) for m in received.get("Messages", [])]


def test_the_demo_queue_is_made_in_the_management_account_and_set_on_the_app(org, app):
    assert app.sqs_queue_url.endswith(f"/{org.management_account_id}/{DEMO_QUEUE_NAME}")
    event = AuditEvent.objects.get(action="aws_integration.awsapp.created")
    assert event.details["after"]["sqs_queue_url"] == app.sqs_queue_url
    # Asked again (a second start of the demo), SQS answers the same queue.
    assert create_demo_queue(org) == app.sqs_queue_url


def test_a_launched_instance_arrives_through_the_queue(org, app):
    account_id = org.accounts[0].account_id
    out = change("run-instance", "--account", account_id, "--name", "standin-web")
    instance_id = re.search(r"Launched instance (i-[0-9a-f]+)", out).group(1)
    assert f"Sent its RunInstances event to {app.sqs_queue_url}" in out
    (event,) = queued_bodies(app)
    assert event["detail-type"] == "AWS API Call via CloudTrail"
    assert event["source"] == "aws.ec2" and event["account"] == account_id
    assert event["detail"]["responseElements"]["instancesSet"]["items"][0]["instanceId"] == (
        instance_id
    )
    assert not Resource.objects.filter(remote_id=instance_id).exists()

    counts = poll(app)

    assert counts["received"] == counts["handled"] == 1
    row = Resource.objects.get(app=app, type=ResourceType.EC2_INSTANCE, remote_id=instance_id)
    assert (row.name, row.account_id, row.region, row.deleted_at) == (
        "standin-web",
        account_id,
        REGION,
        None,
    )
    run = SyncRun.objects.get(app=app, kind=SyncKind.EVENTS)
    assert run.status == SyncStatus.SUCCEEDED
    assert AuditEvent.objects.filter(
        action="sync.completed", target_type="aws_integration.syncrun", target_id=str(run.pk)
    ).exists()

    # Tagged, then terminated: located from the inventory, no --account needed.
    change("tag-instance", "--instance-id", instance_id, "--tag", "team=payments")
    assert poll(app)["handled"] == 1
    row.refresh_from_db()
    assert row.tags == {"Name": "standin-web", "team": "payments"}
    change("terminate-instance", "--instance-id", instance_id)
    assert poll(app)["handled"] == 1
    row.refresh_from_db()
    assert row.deleted_at is not None


def test_a_created_role_arrives_in_the_first_member_account_by_default(org, app):
    out = change("create-role", "--name", "standin-analyst")
    account_id = org.accounts[0].account_id
    arn = f"arn:aws:iam::{account_id}:role/standin-analyst"
    assert f"Created role {arn}." in out
    assert poll(app)["handled"] == 1
    assert Resource.objects.get(app=app, type=ResourceType.IAM_ROLE, remote_id=arn).account_id == (
        account_id
    )


def test_a_group_member_added_becomes_an_observed_grant(org, app):
    user = make_user(PERSON.email, email_verified=True)
    engine.run_sync(sync_services.request_sync(app, enqueue=False).pk)
    assert not Grant.objects.filter(user=user, resource__name="Data").exists()

    change("add-group-member", "--group", "Data", "--user", PERSON.email)

    assert poll(app)["handled"] == 1
    grant = Grant.objects.get(user=user, resource__name="Data")
    assert (grant.source, grant.status) == (GrantSource.OBSERVED, GrantStatus.ACTIVE)
    assert AuditEvent.objects.filter(action="grant.observed", target_id=str(grant.pk)).exists()


def test_it_refuses_to_run_without_a_stand_in_endpoint(settings, app):
    endpoint = settings.AWS_ENDPOINT_URL
    settings.AWS_ENDPOINT_URL = ""
    with pytest.raises(CommandError, match="AWS_ENDPOINT_URL is not set.*never touches real AWS"):
        change("run-instance")
    settings.AWS_ENDPOINT_URL = endpoint
    assert queued_bodies(app) == []


def test_it_refuses_an_app_without_a_queue_and_a_user_it_cannot_find(org, app):
    AwsApp.objects.filter(pk=app.pk).update(sqs_queue_url="")
    with pytest.raises(CommandError, match="has no SQS queue URL"):
        change("run-instance")
    AwsApp.objects.filter(pk=app.pk).update(sqs_queue_url=create_demo_queue(org))
    with pytest.raises(CommandError, match="No Identity Center user “nobody@example.com”"):
        change("add-group-member", "--group", "Data", "--user", "nobody@example.com")
    with pytest.raises(CommandError, match="not in the inventory"):
        change("terminate-instance", "--instance-id", "i-0123456789abcdef0")
    assert queued_bodies(app) == []
