"""The demo's AWS app, filled from what the seed built in the stand-in AWS, and its OIDC
settings pointed at the test identity provider."""

from __future__ import annotations

import dataclasses
import json

import pytest

from access.choices import ResourceType
from access.models import App, Resource
from audit.models import AuditEvent
from aws_integration import services
from aws_integration.choices import SyncKind, SyncStatus, ValidationStatus
from aws_integration.models import AwsApp, AwsSettings
from aws_integration.sync.services import VIA_DEMO
from demo import seed
from demo.aws_app import (
    DEMO_APP_NAME,
    DEMO_QUEUE_NAME,
    configure_demo_oidc,
    create_demo_queue,
    ensure_demo_aws_app,
    validate_and_sync,
)

pytestmark = pytest.mark.django_db

TINY = seed.SeedSize.minimal("tiny", workers=8)


@pytest.fixture
def seeded(aws) -> seed.SeedResult:
    return seed.seed_organization(TINY, region="us-east-1")


def test_the_demo_app_is_an_aws_app_filled_from_the_seed_and_audited(seeded):
    app, created = ensure_demo_aws_app(seeded, description="stand-in")
    assert created
    app = AwsApp.objects.get(pk=app.pk)
    assert app.name == DEMO_APP_NAME == "Demo organization"
    assert app.management_account_id == seeded.management_account_id
    assert app.identity_center_region == "us-east-1"
    assert app.identity_center_instance_arn == seeded.instance_arn
    assert app.identity_store_id == seeded.identity_store_id
    assert app.access_portal_url == f"https://{seeded.identity_store_id}.awsapps.com/start"
    assert app.regions == seeded.regions == ["us-east-1"]
    assert app.identity_center_management and app.organization_management
    assert app.sqs_queue_url == ""
    app.full_clean()  # the seed's ids pass the same checks as an admin's
    (event,) = AuditEvent.objects.filter(action="aws_integration.awsapp.created")
    assert event.target_id == str(app.pk) and event.actor_id is None


def test_running_the_demo_again_changes_nothing_and_new_stand_in_ids_are_taken(seeded):
    app, _ = ensure_demo_aws_app(seeded)
    count = AuditEvent.objects.count()
    again, created = ensure_demo_aws_app(seeded)
    assert not created and again.pk == app.pk
    assert AuditEvent.objects.count() == count

    restarted = dataclasses.replace(
        seeded,
        instance_arn="arn:aws:sso:::instance/ssoins-0000000000000000",
        identity_store_id="d-0000000000",
    )
    ensure_demo_aws_app(restarted)
    app.refresh_from_db()
    assert app.identity_store_id == "d-0000000000"
    assert app.access_portal_url == "https://d-0000000000.awsapps.com/start"
    (event,) = AuditEvent.objects.filter(action="aws_integration.awsapp.updated")
    assert set(event.details["changes"]) == {
        "identity_center_instance_arn",
        "identity_store_id",
        "access_portal_url",
    }


def test_a_plain_demo_app_from_an_older_database_becomes_the_aws_app(seeded):
    plain = App.objects.create(name=DEMO_APP_NAME)
    app, created = ensure_demo_aws_app(seeded)
    assert not created and app.pk == plain.pk
    assert App.objects.count() == 1
    assert AwsApp.objects.get().management_account_id == seeded.management_account_id
    assert AuditEvent.objects.filter(
        action="aws_integration.awsapp.updated", target_id=str(plain.pk)
    ).exists()


def test_the_demo_points_the_oidc_settings_at_the_test_identity_provider(idp):
    configure_demo_oidc(idp, "portcullis-demo", "demo")
    saved = AwsSettings.objects.get()
    assert saved.oidc_issuer_url == idp
    assert saved.oidc_client_id == "portcullis-demo"
    assert saved.oidc_client_secret == "demo"
    ok, message = services.check_oidc_discovery(saved.oidc_issuer_url)
    assert ok, message
    (event,) = AuditEvent.objects.filter(action="aws.settings.updated")
    assert '"demo"' not in json.dumps(event.details)
    assert event.details["after"]["oidc_client_secret"] == "[redacted]"


def test_the_demo_app_with_its_queue_passes_every_validation_and_its_first_sync_fills_it(
    seeded, idp
):
    configure_demo_oidc(idp, "portcullis-demo", "demo")
    app, _ = ensure_demo_aws_app(seeded, sqs_queue_url=create_demo_queue(seeded))
    assert app.sqs_queue_url.endswith(f"/{seeded.management_account_id}/{DEMO_QUEUE_NAME}")
    assert not Resource.objects.filter(app=app).exists()

    validations, run = validate_and_sync(app)

    statuses = {v.key: v.status for v in validations}
    assert statuses["sqs.receive"] == statuses["oidc.discovery"] == ValidationStatus.PASSED
    assert [k for k, status in statuses.items() if status != ValidationStatus.PASSED] == []
    assert (run.kind, run.status) == (SyncKind.FULL, SyncStatus.SUCCEEDED)
    accounts = Resource.objects.filter(app=app, type=ResourceType.ACCOUNT).values_list(
        "remote_id", flat=True
    )
    assert {a.account_id for a in seeded.accounts} <= set(accounts)
    assert AuditEvent.objects.filter(action="validations.checked", target_id=str(app.pk)).exists()
    assert AuditEvent.objects.filter(action="sync.completed", target_id=str(run.pk)).exists()
    # Labelled in the admin as asked for by the demo, not by the schedule.
    requested = AuditEvent.objects.get(action="sync.requested", target_id=str(run.pk))
    assert requested.actor_name == VIA_DEMO
