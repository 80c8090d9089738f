"""Shape checks for the values an admin pastes from the AWS console, with messages that
say what a good value looks like."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError

ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
INSTANCE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sso:::instance/(sso)?ins-[0-9a-z]{16}$")
IDENTITY_STORE_ID = re.compile(
    r"^d-[0-9a-z]{10}$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
PORTAL_URL = re.compile(r"^https://[a-z0-9-]+\.awsapps\.com/start/?(#/?)?$")
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
QUEUE_PATH = re.compile(r"^/(\d{12})/([A-Za-z0-9_-]{1,80}(\.fifo)?)$")
SQS_HOST = re.compile(
    r"^(sqs\.[a-z0-9-]+\.amazonaws\.com(\.cn)?|[a-z0-9-]+\.queue\.amazonaws\.com)$"
)


def validate_account_id(value: str) -> None:
    if not ACCOUNT_ID.match(value or ""):
        raise ValidationError(
            f"“{value}” is not an AWS account ID: it must be exactly 12 digits, e.g. 123456789012."
        )


def validate_region(value: str) -> None:
    if not REGION.match(value or ""):
        raise ValidationError(
            f"“{value}” is not an AWS region name such as us-east-1 or eu-west-2."
        )


def validate_instance_arn(value: str) -> None:
    if not INSTANCE_ARN.match(value or ""):
        raise ValidationError(
            f"“{value}” is not an Identity Center instance ARN; it looks like "
            "arn:aws:sso:::instance/ssoins-1234567890abcdef (IAM Identity Center → Settings)."
        )


def validate_identity_store_id(value: str) -> None:
    if not IDENTITY_STORE_ID.match(value or ""):
        raise ValidationError(
            f"“{value}” is not an identity store ID; it looks like d-1234567890 "
            "(IAM Identity Center → Settings → Identity source)."
        )


def validate_portal_url(value: str) -> None:
    if not PORTAL_URL.match(value or ""):
        raise ValidationError(
            f"“{value}” is not an AWS access portal URL; it looks like https://d-1234567890.awsapps.com/start."
        )


def validate_role_name(value: str) -> None:
    if not ROLE_NAME.match(value or ""):
        raise ValidationError(
            f"“{value}” is not an IAM role name: 1 to 64 letters, digits or the characters +=,.@_-."
        )


def validate_queue_url(value: str) -> None:
    """An SQS queue URL: https://sqs.<region>.amazonaws.com/<account>/<name>, or the same
    path on the configured AWS endpoint (the stand-in AWS)."""
    parsed = urlparse(value or "")
    endpoint = urlparse(settings.AWS_ENDPOINT_URL) if settings.AWS_ENDPOINT_URL else None
    on_endpoint = endpoint is not None and parsed.netloc == endpoint.netloc
    if not ((parsed.scheme == "https" and SQS_HOST.match(parsed.hostname or "")) or on_endpoint):
        raise ValidationError(
            f"“{value}” is not an SQS queue URL; it looks like "
            "https://sqs.us-east-1.amazonaws.com/123456789012/portcullis-events."
        )
    if not QUEUE_PATH.match(parsed.path):
        raise ValidationError(
            f"“{value}” has no account ID and queue name in its path (/123456789012/queue-name)."
        )


def queue_region(value: str) -> str | None:
    host = urlparse(value).hostname or ""
    match = re.match(r"^sqs\.([a-z0-9-]+)\.amazonaws", host) or re.match(
        r"^([a-z0-9-]+)\.queue\.amazonaws", host
    )
    return match.group(1) if match else None
