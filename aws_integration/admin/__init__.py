"""The admin for the AWS integration: the app and its setup documents, the AWS settings,
validations, sync runs and sync issues, and the read-only task admin (Admin role only)."""

from aws_integration.admin import (  # noqa: F401  (registers the ModelAdmins)
    apps,
    aws_settings,
    sync,
    tasks,
)
