"""Grant drivers for AWS: one per resource type, registered with access.drivers at start-up."""

from __future__ import annotations

from access import drivers
from aws_integration.grants import iam, identity_center, managed
from aws_integration.models import AwsSettings


def register_drivers() -> None:
    for module in (identity_center, iam, managed):
        for resource_type, driver in module.DRIVERS.items():
            drivers.register(resource_type, driver)
    drivers.register_subject_issuer(_aws_issuer)


def _aws_issuer() -> str:
    # Read, not get_aws_settings(): a login must not create the settings row.
    row = AwsSettings.objects.only("oidc_issuer_url").first()
    return row.oidc_issuer_url if row is not None else ""
