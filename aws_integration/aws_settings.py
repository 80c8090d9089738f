"""The installation's one AWS settings row, read by the grant drivers, the sync and the
setup pages alike, and how its values show in the audit log.

Below ``aws_integration.services`` (which changes the settings) so that the drivers, which
only read them, do not import the setup services.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.services import REDACTED, record_event
from aws_integration.models import AwsSettings

# Enough of the External ID to tell two apart in the log, too little to use it.
EXTERNAL_ID_SHOWN = len("portcullis-") + 4


def mask_external_id(value: str) -> str:
    return f"{value[:EXTERNAL_ID_SHOWN]}…" if value else ""


def settings_state(obj: AwsSettings) -> dict[str, Any]:
    return {
        "oidc_issuer_url": obj.oidc_issuer_url,
        "oidc_client_id": obj.oidc_client_id,
        # Only whether a secret is set: never its value.
        "oidc_client_secret": REDACTED if obj.oidc_client_secret else "",
        "external_id": mask_external_id(obj.external_id),
    }


def get_aws_settings() -> AwsSettings:
    """The installation's AWS settings, created (and audited) on first use."""
    existing = AwsSettings.objects.filter(pk=1).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        obj, created = AwsSettings.objects.get_or_create(pk=1)
        if created:
            record_event("aws.settings.created", target=obj, details={"after": settings_state(obj)})
    return obj
