"""The AWS side of an App: connection settings, validations, sync runs and issues."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from access.fields import EncryptedTextField
from access.models import App
from aws_integration import validators
from aws_integration.choices import Severity, SyncKind, SyncStatus, ValidationStatus

DEFAULT_INGESTER_ROLE = "PortcullisIngester"


def generate_external_id() -> str:
    # 32 random bytes, URL-safe: unguessable, and within STS's 2-1224 character limit.
    return "portcullis-" + secrets.token_urlsafe(32)


class AwsSettings(models.Model):
    """Installation-wide AWS settings (one row): the External ID every ingester role's
    trust policy requires, and the OIDC client used to mint AWS sessions for users."""

    external_id = models.CharField(max_length=128, default=generate_external_id, editable=False)
    external_id_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    oidc_issuer_url = models.URLField(
        "OIDC issuer URL",
        blank=True,
        help_text="The identity provider's issuer, e.g. https://example.okta.com.",
    )
    oidc_client_id = models.CharField("OIDC client ID", max_length=255, blank=True)
    oidc_client_secret = EncryptedTextField("OIDC client secret", blank=True)
    oidc_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "AWS settings"
        verbose_name_plural = "AWS settings"

    def __str__(self) -> str:
        return "AWS settings"

    @property
    def callback_url(self) -> str:
        return f"{settings.SITE_URL}/callback/oidc"


class AwsApp(App):
    """An AWS organization connected to Portcullis, reached through the ingester role in
    its management (or delegated-administrator) account and in each member account."""

    management_account_id = models.CharField(
        "management or delegated-administrator account ID",
        max_length=12,
        validators=[validators.validate_account_id],
    )
    sqs_queue_url = models.CharField(
        "CloudTrail events SQS queue URL",
        max_length=512,
        blank=True,
        validators=[validators.validate_queue_url],
        help_text="Optional: an SQS queue fed by an EventBridge rule with CloudTrail events, for real-time sync.",
    )
    organization_management = models.BooleanField(
        "AWS Organization management",
        default=True,
        help_text="Sync and grant IAM roles, EC2 instances, EKS clusters and RDS databases in member accounts.",
    )
    identity_center_management = models.BooleanField(
        "IAM Identity Center management",
        default=False,
        help_text="Sync and grant Identity Center groups, accounts and permission sets.",
    )
    identity_center_region = models.CharField(
        "Identity Center region", max_length=32, blank=True, validators=[validators.validate_region]
    )
    identity_center_instance_arn = models.CharField(
        "Identity Center instance ARN",
        max_length=200,
        blank=True,
        validators=[validators.validate_instance_arn],
    )
    identity_store_id = models.CharField(
        "identity store ID",
        max_length=64,
        blank=True,
        validators=[validators.validate_identity_store_id],
    )
    access_portal_url = models.CharField(
        "access portal URL", max_length=200, blank=True, validators=[validators.validate_portal_url]
    )
    ingester_role_name = models.CharField(
        max_length=64,
        default=DEFAULT_INGESTER_ROLE,
        validators=[validators.validate_role_name],
        help_text="The role Portcullis assumes in the management account and in every member account.",
    )
    regions = models.JSONField(
        default=list,
        blank=True,
        help_text="Regions to sync; empty means every region enabled in the account.",
    )
    full_sync_interval = models.DurationField(default=timedelta(hours=1))

    class Meta:
        verbose_name = "AWS app"

    def clean(self) -> None:
        super().clean()
        if self.identity_center_management:
            missing = {
                field: "Required when IAM Identity Center management is on."
                for field in (
                    "identity_center_region",
                    "identity_center_instance_arn",
                    "identity_store_id",
                    "access_portal_url",
                )
                if not getattr(self, field)
            }
            if missing:
                raise ValidationError(missing)
        if self.full_sync_interval is not None and self.full_sync_interval < timedelta(minutes=5):
            raise ValidationError(
                {
                    "full_sync_interval": "A full sync at most every 5 minutes: use real-time sync for faster updates."
                }
            )
        for region in self.regions or []:
            try:
                validators.validate_region(region)
            except ValidationError as exc:
                raise ValidationError({"regions": exc.messages}) from exc

    def role_arn(self, account_id: str | None = None) -> str:
        return f"arn:aws:iam::{account_id or self.management_account_id}:role/{self.ingester_role_name}"


class Validation(models.Model):
    """The latest result of one check of an app's AWS setup."""

    app = models.ForeignKey(AwsApp, on_delete=models.CASCADE, related_name="validations")
    key = models.CharField(max_length=120)
    name = models.CharField(max_length=200)
    why = models.TextField(help_text="Why Portcullis needs this.")
    status = models.CharField(max_length=16, choices=ValidationStatus.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    details = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["app", "status", "key"]
        constraints = [models.UniqueConstraint(fields=["app", "key"], name="validation_unique_key")]

    def __str__(self) -> str:
        return f"{self.name}: {self.get_status_display()}"


class SyncRun(models.Model):
    """One sync of an app (full, one account, or a batch of real-time events)."""

    app = models.ForeignKey(AwsApp, on_delete=models.CASCADE, related_name="sync_runs")
    kind = models.CharField(max_length=16, choices=SyncKind.choices, default=SyncKind.FULL)
    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.QUEUED)
    account_id = models.CharField(max_length=12, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    counts = models.JSONField(
        default=dict, blank=True, help_text="created/updated/deleted per resource type."
    )
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["app", "status"], name="syncrun_app_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.app} ({self.get_status_display()})"

    @property
    def progress_percent(self) -> int:
        if not self.progress_total:
            return 100 if self.finished_at else 0
        return min(100, round(100 * self.progress_done / self.progress_total))

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class SyncIssue(models.Model):
    """A problem found while syncing one scope (account × region × service), kept until
    the scope syncs cleanly again."""

    app = models.ForeignKey(AwsApp, on_delete=models.CASCADE, related_name="sync_issues")
    scope = models.CharField(max_length=255, help_text="account/region/service, or 'events'.")
    code = models.CharField(max_length=120)
    message = models.TextField()
    last_run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="issues"
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    occurrences = models.PositiveIntegerField(default=1)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["app", "scope", "code"], name="syncissue_unique")
        ]

    def __str__(self) -> str:
        return f"{self.scope}: {self.message[:80]}"


class BadEventMessage(models.Model):
    """A message the events poller deleted without handling it: not an event (bad input),
    or given up after failing ``MAX_RECEIVES`` times. Its issue counts them; this row keeps
    each one, with the start of its body, which may hold account data (Admin role only).

    The newest ``poller.BAD_MESSAGES_KEPT`` rows of an app are kept; a flood of junk
    replaces older rows rather than growing the table."""

    app = models.ForeignKey(AwsApp, on_delete=models.CASCADE, related_name="bad_event_messages")
    issue = models.ForeignKey(
        SyncIssue, null=True, blank=True, on_delete=models.SET_NULL, related_name="bad_messages"
    )
    run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="bad_messages"
    )
    code = models.CharField(max_length=120)
    message_id = models.CharField("SQS message ID", max_length=128)
    receive_count = models.PositiveIntegerField(
        default=1, help_text="SQS's ApproximateReceiveCount when it was deleted."
    )
    body = models.TextField(blank=True, help_text="The first 1 KiB of the message body.")
    body_bytes = models.PositiveIntegerField(default=0, help_text="The whole body's size.")
    error = models.TextField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["app", "-id"], name="badeventmessage_app_idx")]

    def __str__(self) -> str:
        return f"{self.code}: {self.message_id}"


class UnknownEventName(models.Model):
    """How many events of one (source, name) Portcullis does not follow reached an app's
    queue: what a broad EventBridge rule delivers for nothing. Names past
    ``poller.UNKNOWN_NAMES_KEPT`` per app are counted together under ``OTHER_NAMES``."""

    OTHER_NAMES = "(other names)"

    app = models.ForeignKey(AwsApp, on_delete=models.CASCADE, related_name="unknown_event_names")
    source = models.CharField(max_length=128, blank=True)
    name = models.CharField(max_length=128)
    count = models.PositiveBigIntegerField(default=0)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-count", "source", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["app", "source", "name"], name="unknowneventname_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.name}".strip()


class SyncScope(models.Model):
    """When a scope (account × region × service) was last listed completely.

    Resources keep the time they were last *changed*; a resource's scope tells when it was
    last seen, so a sync with no change writes no inventory row."""

    app = models.ForeignKey(AwsApp, on_delete=models.CASCADE, related_name="sync_scopes")
    account_id = models.CharField(max_length=12, blank=True)
    region = models.CharField(max_length=32, blank=True)
    service = models.CharField(max_length=32)
    last_success_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["app", "account_id", "region", "service"], name="syncscope_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_id or '-'}/{self.region or '-'}/{self.service}"


class IdentityCenterUser(models.Model):
    """A user of the identity store, linked to the portal user with the same email."""

    app = models.ForeignKey(AwsApp, on_delete=models.CASCADE, related_name="identity_center_users")
    remote_id = models.CharField(max_length=64)
    user_name = models.CharField(max_length=255)
    email = models.EmailField(blank=True, db_index=True)
    display_name = models.CharField(max_length=255, blank=True)
    portal_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="identity_center_users",
    )
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user_name"]
        constraints = [models.UniqueConstraint(fields=["app", "remote_id"], name="idc_user_unique")]

    def __str__(self) -> str:
        return self.user_name
