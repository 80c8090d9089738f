"""Query filters of the access API (django-filter)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

from access.choices import GrantSource, GrantStatus, RequestKind, RequestStatus, ResourceType
from access.models import AccessRequest, Grant, Resource, User
from access.querysets import AccessRequestQuerySet

# The largest primary key (BigAutoField): a larger number reached the database and failed
# there (SQLite: OverflowError, a 500), so it is refused as input instead.
ID_MAX = 2**63 - 1


class IdFilter(filters.NumberFilter):
    """A primary key: whole numbers from 1 to ID_MAX (NumberFilter alone would take 1.5)."""

    field_class = forms.IntegerField  # type: ignore[assignment]  # whole numbers, not decimals

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(*args, **kwargs)


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class _RawValue(forms.TextInput):
    # django-filter's BooleanWidget turns what it cannot read into "not given".
    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        return data.get(name)


class _TrueOrFalseField(forms.NullBooleanField):
    widget = _RawValue

    def to_python(self, value: Any) -> bool | None:  # type: ignore[override]  # None: not given
        raw = value.strip().lower() if isinstance(value, str) else value
        if raw in (None, ""):
            return None
        if raw in TRUE_WORDS or raw is True:
            return True
        if raw in FALSE_WORDS or raw is False:
            return False
        raise forms.ValidationError(f"{value!r} is not true or false.")

    def validate(self, value: Any) -> None:
        return None


class BooleanFilter(filters.BooleanFilter):
    """true or false (1/0, yes/no, on/off too); anything else is a 400 naming the parameter,
    where django-filter took it for "not given" (found by fuzzing, tests/test_api_fuzz.py)."""

    field_class = _TrueOrFalseField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["widget"] = _RawValue
        super().__init__(*args, **kwargs)


def id_filter(help_text: str, **kwargs: object) -> IdFilter:
    # NumberFilter reads as "number" in the schema; say "integer", keeping the help text.
    schema = {"type": "integer", "minimum": 1, "maximum": ID_MAX, "description": help_text}
    # drf-spectacular reads the schema off a filter instance as well as off a class.
    return extend_schema_field(schema)(IdFilter(help_text=help_text, **kwargs))  # type: ignore[type-var]


class ResourceFilter(filters.FilterSet):
    type = filters.MultipleChoiceFilter(
        choices=ResourceType.choices, help_text="Resource type; repeat for several."
    )
    account_id = filters.CharFilter(help_text="The 12-digit AWS account id.")
    region = filters.CharFilter(help_text="AWS region, e.g. eu-west-1.")
    app = id_filter("Id of the app (AWS organization).", field_name="app_id")
    search = filters.CharFilter(
        method="filter_search",
        help_text=(
            "Part of the name, ARN, a tag (key, value, or key=value as the portal shows "
            "it) or the account's name, in any case; or the exact remote id."
        ),
    )
    # Applied in filter_queryset, because its absence is what hides deleted rows.
    include_deleted = BooleanFilter(
        method="filter_include_deleted",
        help_text=(
            "Also list resources deleted in AWS. Only admins and auditors can see them; "
            "for anyone else this changes nothing."
        ),
    )

    class Meta:
        model = Resource
        fields = ["type", "account_id", "region", "app", "search", "include_deleted"]

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        # The catalogue's search; accounts found among every resource the caller may see,
        # not only those of the type asked for (the type filter runs first).
        return queryset.search(value, accounts_in=self.queryset)  # type: ignore[attr-defined]  # a ResourceQuerySet

    def filter_include_deleted(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        return queryset

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_deleted"):
            queryset = queryset.filter(deleted_at__isnull=True)
        return queryset


class GrantFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(
        choices=GrantStatus.choices, help_text="Grant status; repeat for several."
    )
    source = filters.ChoiceFilter(choices=GrantSource.choices)
    resource = id_filter("Id of the resource.", field_name="resource_id")
    # The view decides whose grants are listed (and whether the caller may see them).
    user = id_filter(
        "Id of the user whose grants to list; the caller by default. Admins and auditors "
        "may name anyone, managers their reports.",
        method="filter_user",
    )

    class Meta:
        model = Grant
        fields = ["status", "source", "resource", "user"]

    def filter_user(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        return queryset


def awaiting_decision_by(queryset: AccessRequestQuerySet, user: User) -> QuerySet[AccessRequest]:
    return queryset.awaiting_decision_by(user)


class AccessRequestFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(
        choices=RequestStatus.choices, help_text="Request status; repeat for several."
    )
    kind = filters.ChoiceFilter(choices=RequestKind.choices, help_text="New access or extension.")
    resource = id_filter("Id of the resource.", field_name="resource_id")

    class Meta:
        model = AccessRequest
        fields = ["status", "kind", "resource"]


class ApprovalQueueFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(choices=RequestKind.choices, help_text="New access or extension.")
    resource = id_filter("Id of the resource.", field_name="resource_id")
    # The view decides what "all" means (and whether the caller may ask for it).
    all = BooleanFilter(
        method="filter_all",
        help_text=(
            "Admins only: every pending request, not just those awaiting you. Anyone else "
            "asking gets 403."
        ),
    )

    class Meta:
        model = AccessRequest
        fields = ["kind", "resource", "all"]

    def filter_all(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        return queryset
