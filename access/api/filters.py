"""Query filters of the access API (django-filter)."""

from __future__ import annotations

from django import forms
from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

from access.choices import GrantSource, GrantStatus, ResourceType
from access.models import Grant, Resource


class IdFilter(filters.NumberFilter):
    """A primary key: whole numbers only (NumberFilter alone would take 1.5)."""

    field_class = forms.IntegerField


def id_filter(help_text: str, **kwargs: object) -> IdFilter:
    # NumberFilter reads as "number" in the schema; say "integer", keeping the help text.
    return extend_schema_field({"type": "integer", "description": help_text})(
        IdFilter(help_text=help_text, **kwargs)
    )


class ResourceFilter(filters.FilterSet):
    type = filters.MultipleChoiceFilter(
        choices=ResourceType.choices, help_text="Resource type; repeat for several."
    )
    account_id = filters.CharFilter(help_text="The 12-digit AWS account id.")
    region = filters.CharFilter(help_text="AWS region, e.g. eu-west-1.")
    app = id_filter("Id of the app (AWS organization).", field_name="app_id")
    search = filters.CharFilter(
        method="filter_search",
        help_text="Part of the name, or the exact remote id or ARN.",
    )
    # Applied in filter_queryset, because its absence is what hides deleted rows.
    include_deleted = filters.BooleanFilter(
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
        return queryset.filter(Q(name__icontains=value) | Q(remote_id=value) | Q(arn=value))

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
