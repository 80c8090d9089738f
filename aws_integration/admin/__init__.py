"""The admin for the AWS integration: the app and its setup documents, the AWS settings,
validations, sync runs and sync issues (Admin role only)."""

from aws_integration.admin import apps, aws_settings, sync  # noqa: F401  (registers the ModelAdmins)
