from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from access import tokens
from access.choices import ExtensionPolicy
from access.humanize import humanize
from access.models import MAX_RULE_STAGES, RequestRule, RequestRuleStage, User
from access.services.requests import DURATION_CHOICES, unknown_user
from access.services.rules import join_words, rule_stage_problems


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
        help_text="Leave empty for the longest a token may last.",
        error_messages={
            "invalid": "Enter a whole number of days, or leave it empty.",
        },
    )
    read_only = forms.BooleanField(
        label="Read-only",
        required=False,
        help_text="The token may only read; anything that changes something is refused.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        longest = tokens.max_expiry_days()
        help_text = f"From 1 to {longest}. Leave empty for the longest a token may last."
        self.fields["expires_in_days"].help_text = help_text

    def clean_expires_in_days(self) -> int | None:
        days = self.cleaned_data.get("expires_in_days")
        try:
            tokens.expiry_in_days(days)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["expires_in_days"]) from None
        return days

    def expires_at(self) -> datetime:
        return tokens.expiry_in_days(self.cleaned_data.get("expires_in_days"))


# Requests, decisions and grants ---------------------------------------------------------------
class OnBehalfField(forms.ModelChoiceField):
    """The person a request is for. An id that matches nobody is passed on as an unknown
    user, which the request service refuses with the message it gives for anyone the
    requester may not ask for: the page does not tell who exists."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except ValidationError:
            try:
                pk = int(value)
            except (TypeError, ValueError):
                raise ValidationError(
                    self.error_messages["invalid_choice"], code="invalid_choice"
                ) from None
            return unknown_user(pk)


class RequestDetailsForm(forms.Form):
    """What one submission shares across its resources: why, the ticket, and for whom."""

    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="What you need the access for; the approvers read it.",
    )
    ticket = forms.CharField(label="Ticket reference", required=False, max_length=200, strip=True)
    user = OnBehalfField(
        label="On behalf of",
        queryset=User.objects.all(),
        required=False,
        error_messages={"invalid_choice": "Choose the person from the list."},
    )


class DecisionForm(forms.Form):
    """One reviewer's approve or deny, with an optional comment."""

    APPROVE = "approve"
    DENY = "deny"

    decision = forms.ChoiceField(choices=[(APPROVE, "Approve"), (DENY, "Deny")])
    comment = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2, "cols": 40})
    )


class RevokeForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000, strip=True)


class ExtensionForm(forms.Form):
    """Extending a grant: how much longer (the rule's durations) and why."""

    duration = forms.TypedChoiceField(label="Extend by", coerce=int, choices=())
    reason = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )
    ticket = forms.CharField(label="Ticket reference", required=False, max_length=200)

    def __init__(self, *args: Any, durations: list[timedelta], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["duration"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [(int(d.total_seconds()), humanize(d)) for d in durations]
        field.error_messages["invalid_choice"] = (
            "Choose one of the durations offered; the rule allows no longer."
        )

    def chosen_duration(self) -> timedelta:
        return timedelta(seconds=self.cleaned_data["duration"])


# Request rules --------------------------------------------------------------------------------
def _duration_choices(current: timedelta | None, *, empty: str | None) -> list[tuple[str, str]]:
    values = list(DURATION_CHOICES)
    if current is not None and current not in values:
        values.append(current)
    choices = [(str(int(d.total_seconds())), humanize(d)) for d in sorted(values)]
    return ([("", empty)] if empty is not None else []) + choices


def _as_duration(value: str) -> timedelta | None:
    return timedelta(seconds=int(value)) if value else None


class RequestRuleForm(forms.ModelForm):
    """A resource's request rule, as its owners edit it (the resource is fixed by the page)."""

    class Meta:
        model = RequestRule
        fields = (
            "name",
            "priority",
            "requester_group",
            "allow_requests",
            "auto_approve",
            "max_duration",
            "recommended_duration",
            "allow_until_revoked",
            "require_reason",
            "require_ticket",
            "require_deny_comment",
            "extension_policy",
            "allow_self_approval",
        )

    # What only admins may turn on: each lets access be had without someone else deciding
    # (an owner could otherwise approve their own requests by editing the rule).
    RELAXING_FIELDS = ("auto_approve", "allow_self_approval", "allow_until_revoked")

    def __init__(self, *args: Any, can_relax: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instance = self.instance
        no_maximum = can_relax or instance.max_duration is None and instance.pk is not None
        self.fields["max_duration"] = forms.TypedChoiceField(
            label="Maximum duration",
            required=not no_maximum,
            coerce=_as_duration,
            empty_value=None,
            choices=_duration_choices(
                instance.max_duration, empty="No maximum" if no_maximum else None
            ),
        )
        self.fields["recommended_duration"] = forms.TypedChoiceField(
            label="Recommended duration",
            required=False,
            coerce=_as_duration,
            empty_value=None,
            choices=_duration_choices(instance.recommended_duration, empty="None"),
        )
        for name in ("max_duration", "recommended_duration"):
            value = getattr(instance, name)
            self.initial[name] = str(int(value.total_seconds())) if value is not None else ""
        if not can_relax:
            note = "Only an admin can change this."
            for name in self.RELAXING_FIELDS:
                self.fields[name].disabled = True
                self.fields[name].help_text = note
            if instance.max_duration is None and instance.pk is not None:
                self.fields["max_duration"].disabled = True
                self.fields["max_duration"].help_text = note
            relaxed = instance.relaxations() if instance.pk is not None else []
            if relaxed:
                # While the rule relaxes anything, whom it applies to, its priority and
                # whether it takes requests are an admin's (access/services/rules.py refuses
                # the change anyway).
                scope_note = f"Only an admin can change this: the rule {join_words(relaxed)}."
                for name in ("requester_group", "priority", "allow_requests"):
                    self.fields[name].disabled = True
                    self.fields[name].help_text = scope_note
            # A choice field; the stubs' type of its choices cannot be filtered as a list.
            policy: Any = self.fields["extension_policy"]
            if instance.extension_policy == ExtensionPolicy.AUTO_APPROVE:
                policy.disabled = True
                policy.help_text = note
            else:
                policy.choices = [
                    c for c in policy.choices if c[0] != ExtensionPolicy.AUTO_APPROVE.value
                ]


STAGE_ORDERS = [("", "---------")] + [(str(n), str(n)) for n in range(1, MAX_RULE_STAGES + 1)]


class StageForm(forms.ModelForm):
    # No preselected order: with a default shown, an untouched extra row would count as a
    # stage the owner never meant to add.
    order = forms.TypedChoiceField(label="Order", choices=STAGE_ORDERS, coerce=int)

    class Meta:
        model = RequestRuleStage
        fields = ("order", "reviewers", "mode")


class BaseStageFormSet(forms.BaseInlineFormSet):
    """A rule that is not auto-approved has 1 to 3 stages numbered 1, 2, 3 (used by the admin
    and the owners' rule pages alike). ``can_relax``: whether the editor may tick
    auto-approve, which the messages offer only then."""

    def __init__(self, *args: Any, can_relax: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.can_relax = can_relax

    def clean(self) -> None:
        if any(self.errors):
            return
        # Checked before Django's own duplicate check, whose message names no stage.
        # Saved stages the submission has no row for stay as they are, so they count too
        # (a stale form would otherwise add a second stage 1: an IntegrityError, a 500).
        rows = {form.instance.pk for form in self.initial_forms}
        kept = (
            []
            if self.instance.pk is None
            else [stage.order for stage in self.instance.stages.all() if stage.pk not in rows]
        )
        orders = kept + [
            form.cleaned_data["order"]
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("order") is not None
        ]
        rule = self.instance
        problems = rule_stage_problems(
            allow_requests=rule.allow_requests,
            auto_approve=rule.auto_approve,
            orders=orders,
            can_relax=self.can_relax,
        )
        if problems:
            raise ValidationError(problems)
        super().clean()


StageFormSet = forms.inlineformset_factory(
    RequestRule,
    RequestRuleStage,
    form=StageForm,
    formset=BaseStageFormSet,
    extra=MAX_RULE_STAGES,
    max_num=MAX_RULE_STAGES,
    validate_max=True,
    can_delete=True,
)
