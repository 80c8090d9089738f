"""Filters on the audit log, shared by the audit page and the API."""

from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from audit.choices import ActorType
from audit.models import AuditEvent

DATE_FORMAT_HELP = "Enter the date as YYYY-MM-DD, for example 2025-01-31."
# Suggestions for the action and target type boxes come from the newest events
# only, so the page never scans the whole log for them.
SUGGESTION_WINDOW = 5000


_FIRST_DAY = dt.date.min + dt.timedelta(days=1)
_LAST_DAY = dt.date.max - dt.timedelta(days=1)


def _start_of_day(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


class AuditEventFilterForm(forms.Form):
    def clean(self) -> dict:
        cleaned = super().clean()
        assert cleaned is not None  # Form.clean returns cleaned_data
        since, until = cleaned.get("date_from"), cleaned.get("date_to")
        if since and until and since > until:
            raise forms.ValidationError(
                f"The 'from' date ({since:%Y-%m-%d}) is after the 'to' date ({until:%Y-%m-%d}); "
                "swap them or clear one."
            )
        return cleaned


class AuditEventFilter(django_filters.FilterSet):
    """Narrows audit events by actor, action, target and a date range.

    Dates are whole days in the site's time zone, both ends included. They
    are turned into a range on ``occurred_at`` (not a ``__date`` lookup) so the
    column's index is used.
    """

    actor = django_filters.CharFilter(
        field_name="actor_name",
        lookup_expr="icontains",
        label="Actor",
        help_text="Part of the actor's name.",
    )
    actor_type = django_filters.ChoiceFilter(
        choices=ActorType.choices, label="Actor type", empty_label="Any"
    )
    action = django_filters.CharFilter(
        field_name="action",
        lookup_expr="exact",
        label="Action",
        help_text="The exact action, for example access.grant.revoked.",
        widget=forms.TextInput(attrs={"list": "audit-actions"}),
    )
    target_type = django_filters.CharFilter(
        field_name="target_type",
        lookup_expr="exact",
        label="Target type",
        help_text="The exact target type, for example access.grant.",
        widget=forms.TextInput(attrs={"list": "audit-target-types"}),
    )
    target_id = django_filters.CharFilter(
        field_name="target_id",
        lookup_expr="exact",
        label="Target id",
        help_text="The exact target id, for example a grant's number.",
    )
    target = django_filters.CharFilter(
        field_name="target_label",
        lookup_expr="icontains",
        label="Target",
        help_text="Part of the target's label.",
    )
    date_from = django_filters.DateFilter(
        method="filter_date_from",
        label="From",
        help_text="First day included (YYYY-MM-DD).",
        widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}),
        error_messages={"invalid": f"'From' is not a date. {DATE_FORMAT_HELP}"},
    )
    date_to = django_filters.DateFilter(
        method="filter_date_to",
        label="To",
        help_text="Last day included (YYYY-MM-DD).",
        widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}),
        error_messages={"invalid": f"'To' is not a date. {DATE_FORMAT_HELP}"},
    )

    class Meta:
        model = AuditEvent
        fields: list[str] = []
        form = AuditEventFilterForm

    # The first and last days a date input accepts bound nothing; converting them to
    # UTC datetimes would overflow, so they are left out rather than answered with a 500.
    def filter_date_from(
        self, queryset: QuerySet[AuditEvent], name: str, value: dt.date
    ) -> QuerySet[AuditEvent]:
        if value <= _FIRST_DAY:
            return queryset
        return queryset.filter(occurred_at__gte=_start_of_day(value))

    def filter_date_to(
        self, queryset: QuerySet[AuditEvent], name: str, value: dt.date
    ) -> QuerySet[AuditEvent]:
        if value >= _LAST_DAY:
            return queryset
        return queryset.filter(occurred_at__lt=_start_of_day(value + dt.timedelta(days=1)))


def recent_values(field: str, window: int = SUGGESTION_WINDOW) -> list[str]:
    """Distinct values of ``field`` among the newest ``window`` events, in one bounded query."""
    newest = AuditEvent.objects.order_by("-id").values("pk")[:window]
    return list(
        AuditEvent.objects.filter(pk__in=newest)
        .exclude(**{field: ""})
        .order_by(field)
        .values_list(field, flat=True)
        .distinct()
    )
