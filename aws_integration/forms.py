"""Admin forms for the AWS app and the AWS settings."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from aws_integration import services, validators
from aws_integration.models import AwsApp, AwsSettings

IDENTITY_CENTER_FIELDS = (
    "identity_center_region",
    "identity_center_instance_arn",
    "identity_store_id",
    "access_portal_url",
)
IDENTITY_CENTER_HINT = "Needed when IAM Identity Center management is on."


class RegionsField(forms.Field):
    """A list of region names, typed as one line: "us-east-1, eu-west-1"."""

    widget = forms.TextInput(attrs={"size": 60, "placeholder": "us-east-1, eu-west-1"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            names = [str(v) for v in value]
        else:
            names = [part for part in re.split(r"[\s,]+", value or "") if part]
        # Order kept, duplicates dropped: the list is what sync walks through.
        return list(dict.fromkeys(name.strip().lower() for name in names))

    def validate(self, value: list[str]) -> None:
        errors = []
        for name in value:
            try:
                validators.validate_region(name)
            except ValidationError as exc:
                errors.extend(exc.messages)
        if errors:
            raise ValidationError(errors)


class AwsAppForm(forms.ModelForm):
    """The issue's fields, exactly; model ``clean()`` checks the Identity Center fields
    once the toggle is on and the sync interval's floor."""

    regions = RegionsField(
        required=False,
        help_text="Comma-separated, e.g. “us-east-1, eu-west-1”. Empty: every region enabled "
        "in each account.",
    )

    class Meta:
        model = AwsApp
        fields = (
            "name",
            "management_account_id",
            "sqs_queue_url",
            "organization_management",
            "identity_center_management",
            *IDENTITY_CENTER_FIELDS,
            "ingester_role_name",
            "regions",
            "full_sync_interval",
        )
        help_texts = {
            "management_account_id": "12 digits: the organization's management account, or "
            "the account delegated to administer IAM Identity Center.",
            "full_sync_interval": "hh:mm:ss, e.g. 01:00:00 for hourly (at least 00:05:00).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in IDENTITY_CENTER_FIELDS:
            field = self.fields[name]
            field.help_text = f"{IDENTITY_CENTER_HINT} {field.help_text}".strip()


class AwsSettingsForm(forms.ModelForm):
    """OIDC settings. The client secret is write-only: never rendered, blank keeps it."""

    oidc_issuer_url = forms.URLField(
        label="OIDC issuer URL",
        required=False,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"size": 60}),
        help_text="The identity provider's issuer, e.g. https://example.okta.com.",
    )
    client_secret = forms.CharField(
        label="OIDC client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_client_secret = forms.BooleanField(
        label="Clear the stored client secret",
        required=False,
    )

    class Meta:
        model = AwsSettings
        fields = ("oidc_issuer_url", "oidc_client_id")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        has_secret = bool(self.instance.pk and self.instance.oidc_client_secret)
        self.fields["client_secret"].help_text = (
            "A secret is stored; it is never shown. Leave blank to keep it, or type a new one."
            if has_secret
            else "No secret is stored. Type one if the identity provider issued one."
        )
        self.discovery_message = ""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None  # Form.clean returns cleaned_data
        if data.get("client_secret") and data.get("clear_client_secret"):
            self.add_error("clear_client_secret", "Either type a new secret or clear it, not both.")
        issuer = data.get("oidc_issuer_url")
        if issuer and not data.get("oidc_client_id"):
            self.add_error("oidc_client_id", "The client ID is needed with an issuer URL.")
        if issuer and "oidc_issuer_url" not in self.errors:
            ok, message = services.check_oidc_discovery(issuer)
            if not ok:
                self.add_error("oidc_issuer_url", message)
            self.discovery_message = message
        return data

    def settings_changes(self) -> dict[str, Any]:
        """What to hand to ``services.update_aws_settings``: the secret only when a new
        one was typed or clearing was asked for."""
        data = self.cleaned_data
        changes: dict[str, Any] = {
            "oidc_issuer_url": data.get("oidc_issuer_url", ""),
            "oidc_client_id": data.get("oidc_client_id", ""),
        }
        if data.get("client_secret"):
            changes["oidc_client_secret"] = data["client_secret"]
        elif data.get("clear_client_secret"):
            changes["oidc_client_secret"] = ""
        return changes
