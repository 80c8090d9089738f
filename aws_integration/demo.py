"""The demo's AWS app and OIDC settings, filled from what the seed built in the stand-in
AWS. Created or brought in line idempotently; every change is audited (actor: system)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from access import services as access_services
from access.demo import DEMO_APP_NAME
from access.models import App
from aws_integration import services
from aws_integration.models import AwsApp, AwsSettings
from aws_integration.seed import SeedResult


def demo_app_values(result: SeedResult, description: str = "") -> dict[str, Any]:
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
        # Real-time sync comes with the demo's queue, once there is one.
        "sqs_queue_url": "",
    }


def ensure_demo_aws_app(result: SeedResult, description: str = "") -> tuple[AwsApp, bool]:
    """The AWS app for the seeded organization. The stand-in's ids change with every
    start, so an existing demo app is updated to the new ones (and the change audited).
    A plain App of the same name (from an older demo database) becomes the AWS app."""
    values = demo_app_values(result, description)
    with transaction.atomic():
        app = AwsApp.objects.filter(name=DEMO_APP_NAME).first()
        if app is None:
            plain = App.objects.filter(name=DEMO_APP_NAME).first()
            if plain is None:
                app = AwsApp(name=DEMO_APP_NAME, **values)
                app.full_clean()
                app.save()
                access_services.record_created(app, actor=None, after=access_services.snapshot(app))
                return app, True
            # Multi-table inheritance: add the AWS row under the existing App row.
            app = AwsApp(
                app_ptr=plain,
                **{f.attname: getattr(plain, f.attname) for f in App._meta.concrete_fields},
            )
            # Its App row exists: uniqueness checks must see this as that row, not a new one.
            app._state.adding = False
            before = access_services.snapshot(plain)
        else:
            before = access_services.snapshot(app)
        for name, value in values.items():
            setattr(app, name, value)
        app.full_clean()
        app.save()
        access_services.record_updated(
            app, actor=None, before=before, after=access_services.snapshot(app)
        )
    return app, False


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
