from __future__ import annotations

from datetime import datetime

from django import forms

from access import tokens


class ApiTokenForm(forms.Form):
    """Creating a personal API token: a name to recognise it by, and an optional lifetime."""

    name = forms.CharField(
        max_length=tokens.NAME_MAX_LENGTH,
        strip=True,
        help_text="What the token is for, e.g. “laptop CLI” or “CI pipeline”.",
        error_messages={"required": "Give the token a name, so you can recognise it later."},
    )
    expires_in_days = forms.IntegerField(
        label="Expires in (days)",
        required=False,
        min_value=1,
        max_value=tokens.MAX_EXPIRY_DAYS,
        help_text=f"From 1 to {tokens.MAX_EXPIRY_DAYS}. Leave empty for a token that never expires.",
        error_messages={
            "min_value": f"A token lasts from 1 to {tokens.MAX_EXPIRY_DAYS} days.",
            "max_value": f"A token lasts from 1 to {tokens.MAX_EXPIRY_DAYS} days.",
            "invalid": "Enter a whole number of days, or leave it empty.",
        },
    )

    def expires_at(self) -> datetime | None:
        return tokens.expiry_in_days(self.cleaned_data.get("expires_in_days"))
