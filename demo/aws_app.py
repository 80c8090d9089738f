"""The demo's AWS app and OIDC settings, filled from what the seed built in the stand-in
AWS. Created or brought in line idempotently; every change is audited (actor: system)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from access.models import App, Owner, Resource, User
from access.services.change_log import record_created, record_updated, snapshot
from access.services.identity import learn_subject
from access.services.owners import add_owner
from aws_integration import clients, services
from aws_integration.models import AwsApp, AwsSettings, SyncRun, Validation
from aws_integration.setup_checks import run_validations
from aws_integration.sync import engine
from aws_integration.sync import services as sync_services
from demo.seed import SeedResult
from demo.users import DEMO_PEOPLE

DEMO_APP_NAME = "Demo organization"
# The queue an EventBridge rule would feed with the organization's CloudTrail events; in
# the demo, `manage.py standin_change` feeds it.
DEMO_QUEUE_NAME = "portcullis-cloudtrail-events"


def demo_app_values(
    result: SeedResult, description: str = "", sqs_queue_url: str = ""
) -> dict[str, Any]:
    return {
        "description": description,
        "management_account_id": result.management_account_id,
        "organization_management": True,
        "identity_center_management": True,
        "identity_center_region": result.region,
        "identity_center_instance_arn": result.instance_arn,
        "identity_store_id": result.identity_store_id,
        "access_portal_url": f"https://{result.identity_store_id}.awsapps.com/start",
        "regions": list(result.regions),
        # Real-time sync: the demo's queue (create_demo_queue), when it has one.
        "sqs_queue_url": sqs_queue_url,
    }


def ensure_demo_aws_app(
    result: SeedResult, description: str = "", sqs_queue_url: str = ""
) -> tuple[AwsApp, bool]:
    """The AWS app for the seeded organization. The stand-in's ids change with every
    start, so an existing demo app is updated to the new ones (and the change audited).
    A plain App of the same name (from an older demo database) becomes the AWS app."""
    values = demo_app_values(result, description, sqs_queue_url)
    with transaction.atomic():
        app = AwsApp.objects.filter(name=DEMO_APP_NAME).first()
        if app is None:
            plain = App.objects.filter(name=DEMO_APP_NAME).first()
            if plain is None:
                app = AwsApp(name=DEMO_APP_NAME, **values)
                app.full_clean()
                app.save()
                record_created(app, actor=None, after=snapshot(app))
                return app, True
            # Multi-table inheritance: add the AWS row under the existing App row.
            app = AwsApp(
                app_ptr=plain,
                **{f.attname: getattr(plain, f.attname) for f in App._meta.concrete_fields},
            )
            # Its App row exists: uniqueness checks must see this as that row, not a new one.
            app._state.adding = False
            before = snapshot(plain)
        else:
            before = snapshot(app)
        for name, value in values.items():
            setattr(app, name, value)
        app.full_clean()
        app.save()
        record_updated(app, actor=None, before=before, after=snapshot(app))
    return app, False


def ensure_demo_app(description: str = "") -> tuple[App, bool]:
    """A plain App row for the demo's organization, created if missing, as older demo
    databases hold it; ``ensure_demo_aws_app`` turns it into the AWS app."""
    with transaction.atomic():
        app = App.objects.filter(name=DEMO_APP_NAME).first()
        if app is not None:
            return app, False
        app = App.objects.create(name=DEMO_APP_NAME, description=description)
        record_created(app, actor=None, after=snapshot(app))
    return app, True


def configure_demo_oidc(issuer_url: str, client_id: str, client_secret: str) -> AwsSettings:
    """Points the AWS settings' OIDC client at the demo identity provider."""
    obj = services.get_aws_settings()
    return services.update_aws_settings(
        obj,
        {
            "oidc_issuer_url": issuer_url,
            "oidc_client_id": client_id,
            "oidc_client_secret": client_secret,
        },
        actor=None,
    )


def create_demo_queue(result: SeedResult) -> str:
    """Creates (or finds: SQS answers the existing queue) the events queue in the
    management account of the stand-in, as its ingester role, the identity the poller
    reads it with; returns its URL."""
    session = clients.session_for_account(
        result.management_account_id,
        result.ingester_role,
        external_id=result.external_id,
        region=result.region,
    )
    sqs = clients.client("sqs", session=session, region=result.region)
    return str(sqs.create_queue(QueueName=DEMO_QUEUE_NAME)["QueueUrl"])


def validate_and_sync(app: AwsApp) -> tuple[list[Validation], SyncRun]:
    """What an admin does after connecting an organization: run the validations, then a
    first full sync. The sync runs inline (a few seconds for the demo's small organization)
    so the inventory is there when the web server answers; "Sync now" in the admin runs
    the next ones in the task cluster."""
    validations = run_validations(app)
    run = sync_services.request_sync(app, enqueue=False, requested_via=sync_services.VIA_DEMO)
    return validations, engine.run_sync(run.pk)


# Who owns what in the demo: the approver persona owns the databases and the Identity Center
# groups, so their requests reach her; everything else has no owner and goes to the admins.
DEMO_OWNED_TYPES = (
    "aws_idc_group",
    "aws_rds_mysql",
    "aws_rds_postgres",
    "aws_aurora_mysql",
    "aws_aurora_postgres",
)


def assign_demo_owners(app: AwsApp, owner_email: str, *, issuer_url: str) -> int:
    """Makes the demo owner own the demo's databases and groups (idempotent, audited) and
    records each demo user's subject at the demo identity provider, so trust-policy grants
    apply without a first sign-in. Returns how many ownerships were added."""
    owner = User.objects.get(email=owner_email)
    added = 0
    for resource in Resource.objects.filter(
        app=app, type__in=DEMO_OWNED_TYPES, deleted_at__isnull=True
    ):
        if not Owner.objects.filter(resource=resource, user=owner).exists():
            add_owner(resource, user=owner, actor=None)
            added += 1
    for person in DEMO_PEOPLE:
        user = User.objects.filter(email=person.email).first()
        if user is not None:
            learn_subject(user, person.sso_subject, issuer=issuer_url)
    return added
