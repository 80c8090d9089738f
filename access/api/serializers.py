"""Shapes of the access API: what it reads out, and the inputs of its actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import prefetch_related_objects
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from access import permissions, tokens
from access.humanize import humanize
from access.models import (
    AccessLevel,
    AccessRequest,
    ApiToken,
    App,
    Approval,
    Grant,
    Owner,
    Resource,
    User,
    UserGroup,
)
from access.querysets import current_reviewers
from access.services.requests import EffectiveRule, rule_for

# A bound against overflow, far above any rule's maximum; the rule then says its own limit.
MAX_DURATION_SECONDS = int(timedelta(days=3650).total_seconds())


class UserSummarySerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="get_full_name", read_only=True)

    class Meta:
        model = User
        fields = ["id", "email", "name"]
        read_only_fields = fields


class GroupSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = UserGroup
        fields = ["id", "name"]
        read_only_fields = fields


class AppSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = App
        fields = ["id", "name", "provider"]
        read_only_fields = fields


class ResourceSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Resource
        fields = ["id", "type", "name", "account_id", "region", "deleted_at"]
        read_only_fields = fields


class AccessLevelSerializer(serializers.ModelSerializer):
    class Meta:
        model = AccessLevel
        fields = ["id", "remote_id", "name", "description", "deleted_at"]
        read_only_fields = fields


class AccessLevelSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = AccessLevel
        fields = ["id", "name"]
        read_only_fields = fields


class OwnerSerializer(serializers.ModelSerializer):
    """An owner is a user or a group; the other field is null."""

    user = UserSummarySerializer(read_only=True, allow_null=True)
    group = GroupSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = Owner
        fields = ["id", "user", "group"]
        read_only_fields = fields


class ResourceSerializer(serializers.ModelSerializer):
    app = AppSummarySerializer(read_only=True)
    type_display = serializers.CharField(source="get_type_display", read_only=True)

    class Meta:
        model = Resource
        fields = [
            "id",
            "app",
            "type",
            "type_display",
            "name",
            "remote_id",
            "arn",
            "account_id",
            "region",
            "parent",
            "tags",
            "risk_sensitivity",
            "first_seen_at",
            "last_seen_at",
            "deleted_at",
        ]
        read_only_fields = fields


def seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


class DurationChoiceSerializer(serializers.Serializer):
    seconds = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Null means until revoked."
    )
    # A field named like Field.label, which the stubs type as the field's own label.
    label = serializers.CharField(read_only=True, help_text='In words, e.g. "8 hours".')  # type: ignore[assignment]


class RequestRuleSerializer(serializers.Serializer):
    """The rule that judges the caller's requests for a resource, as the request form shows it."""

    name = serializers.CharField(read_only=True)
    allow_requests = serializers.BooleanField(read_only=True)
    auto_approve = serializers.BooleanField(read_only=True)
    description = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The rule in plain words."
    )
    duration_choices = DurationChoiceSerializer(many=True, read_only=True)
    default_duration_seconds = serializers.IntegerField(read_only=True, allow_null=True)
    max_duration_seconds = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Null means no maximum."
    )
    allow_until_revoked = serializers.BooleanField(read_only=True)
    require_reason = serializers.BooleanField(read_only=True)
    require_ticket = serializers.BooleanField(read_only=True)

    def to_representation(self, rule: EffectiveRule) -> dict[str, Any]:
        return {
            "name": rule.name,
            "allow_requests": rule.allow_requests,
            "auto_approve": rule.auto_approve,
            # Detail only: for the resource and caller in the context, as the pages have it.
            "description": rule.describe(self.context.get("resource"), self.context.get("user")),
            "duration_choices": [
                {"seconds": seconds(d), "label": humanize(d)} for d in rule.duration_choices()
            ],
            "default_duration_seconds": seconds(rule.default_duration),
            "max_duration_seconds": seconds(rule.max_duration),
            "allow_until_revoked": rule.allow_until_revoked,
            "require_reason": rule.require_reason,
            "require_ticket": rule.require_ticket,
        }


class ResourceDetailSerializer(ResourceSerializer):
    access_levels = AccessLevelSerializer(many=True, read_only=True)
    owners = OwnerSerializer(many=True, read_only=True)
    metadata = serializers.SerializerMethodField()
    request_rule = serializers.SerializerMethodField()

    class Meta(ResourceSerializer.Meta):
        fields = [
            *ResourceSerializer.Meta.fields,
            "metadata",
            "access_levels",
            "owners",
            "request_rule",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {},
            "nullable": True,
            "readOnly": True,
            "description": (
                "What AWS says of the resource (an IAM role's trust policy, which names its "
                "holders' subjects; an instance's addresses; an account's email). Shown to "
                "those who may see who holds access (the resource's owners, admins and "
                "auditors); null for anyone else."
            ),
        }
    )
    def get_metadata(self, resource: Resource) -> dict[str, Any] | None:
        if not permissions.can_view_resource_holders(self.context["request"].user, resource):
            return None
        return resource.metadata

    @extend_schema_field(RequestRuleSerializer)
    def get_request_rule(self, resource: Resource) -> dict[str, Any]:
        user = self.context["request"].user
        return RequestRuleSerializer(
            rule_for(resource, user), context={"resource": resource, "user": user}
        ).data


class GrantSerializer(serializers.ModelSerializer):
    user = UserSummarySerializer(read_only=True)
    resource = ResourceSummarySerializer(read_only=True)
    access_level = AccessLevelSummarySerializer(read_only=True)
    granted_by = UserSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = Grant
        fields = [
            "id",
            "user",
            "resource",
            "access_level",
            "source",
            "status",
            "starts_at",
            "expires_at",
            "propagation_status",
            "last_error",
            "granted_by",
            "revoked_at",
            "revoke_reason",
            "request",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"request": {"help_text": "Id of the access request it came from, if any."}}


class MeSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="get_full_name", read_only=True)
    roles = serializers.SerializerMethodField()
    manager = UserSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = User
        fields = ["id", "username", "email", "name", "title", "department", "roles", "manager"]
        read_only_fields = fields

    @extend_schema_field(
        serializers.ListField(
            child=serializers.ChoiceField(choices=list(permissions.ROLES)),
            help_text="Role names; superusers count as Admin.",
        )
    )
    def get_roles(self, user: User) -> list[str]:
        held = []
        if permissions.is_admin(user):
            held.append(permissions.ADMIN_ROLE)
        if permissions.is_auditor(user):
            held.append(permissions.AUDITOR_ROLE)
        return held


class ApiTokenSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "status",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "read_only",
        ]
        read_only_fields = fields

    # A plain string in the schema: an enum here would collide with the grants' "status" enum.
    @extend_schema_field(
        {"type": "string", "description": "One of active, expired, revoked.", "readOnly": True}
    )
    def get_status(self, token: ApiToken) -> str:
        return tokens.token_status(token)


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=tokens.NAME_MAX_LENGTH, trim_whitespace=True)
    expires_in_days = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="From 1 to API_TOKEN_MAX_DAYS (365 unless configured); omit or null for "
        "the longest a token may last.",
    )
    # A field named like Field.read_only, which the stubs type as the field's own flag.
    read_only = serializers.BooleanField(  # type: ignore[assignment]
        required=False,
        default=False,
        help_text="The token may only read (GET, HEAD, OPTIONS); anything else gets 403.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["expires_at"] = tokens.expiry_in_days(attrs.get("expires_in_days"))
        # A token may mint tokens, but none that outlives it: otherwise a leaked
        # short-lived token could be turned into a permanent one.
        caller = self.context["request"].auth
        ends_at = caller.ends_at if isinstance(caller, ApiToken) else None
        if ends_at is not None and attrs["expires_at"] > ends_at:
            raise serializers.ValidationError(
                {
                    "expires_in_days": (
                        "A token created with an API token cannot outlive it: this one expires "
                        f"at {ends_at.isoformat(timespec='minutes')}. Choose a shorter "
                        "expiry, or create the token while signed in to the web pages."
                    )
                }
            )
        return attrs


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(
        read_only=True,
        help_text="The secret. Shown in this response only: store it now.",
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


# Requests ---------------------------------------------------------------------------------------
class ApprovalSerializer(serializers.ModelSerializer):
    """One reviewer's decision on one stage."""

    reviewer = UserSummarySerializer(read_only=True)

    class Meta:
        model = Approval
        fields = [
            "stage",
            "reviewer",
            "decision",
            "comment",
            "is_override",
            "is_self_approval",
            "created_at",
        ]
        read_only_fields = fields


class StageSerializer(serializers.Serializer):
    order = serializers.IntegerField(read_only=True)
    reviewers = serializers.CharField(read_only=True, help_text="owners, manager or admins.")
    mode = serializers.CharField(read_only=True, help_text="any (one reviewer) or all.")


class AccessRequestListSerializer(serializers.ListSerializer):
    """Loads the current stage's reviewers of every listed pending request in one query."""

    def to_representation(self, data: Any) -> list[Any]:
        requests = list(data.all() if hasattr(data, "all") else data)
        prefetch_related_objects([r for r in requests if r.is_pending], current_reviewers())
        return super().to_representation(requests)


class AccessRequestSerializer(serializers.ModelSerializer):
    user = UserSummarySerializer(read_only=True, help_text="Who gets the access.")
    requested_by = UserSummarySerializer(read_only=True)
    resource = ResourceSummarySerializer(read_only=True)
    access_level = AccessLevelSummarySerializer(read_only=True)
    duration_seconds = serializers.SerializerMethodField()
    duration_display = serializers.SerializerMethodField()
    rule = serializers.SerializerMethodField()
    stages = serializers.SerializerMethodField()
    stage_reviewers = serializers.SerializerMethodField()
    approvals = ApprovalSerializer(many=True, read_only=True)
    granted = serializers.SerializerMethodField()

    class Meta:
        model = AccessRequest
        list_serializer_class = AccessRequestListSerializer
        fields = [
            "id",
            "kind",
            "status",
            "user",
            "requested_by",
            "resource",
            "access_level",
            "grant",
            "duration_seconds",
            "duration_display",
            "reason",
            "ticket",
            "rule",
            "stages",
            "current_stage",
            "stage_reviewers",
            "approvals",
            "auto_approved",
            "granted",
            "pending_until",
            "decided_at",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"grant": {"help_text": "For an extension, the id of the grant extended."}}

    @extend_schema_field(
        serializers.IntegerField(allow_null=True, help_text="Null means until revoked.")
    )
    def get_duration_seconds(self, request: AccessRequest) -> int | None:
        return seconds(request.duration)

    @extend_schema_field(serializers.CharField(help_text='In words, e.g. "8 hours".'))
    def get_duration_display(self, request: AccessRequest) -> str:
        return humanize(request.duration)

    @extend_schema_field(
        serializers.CharField(help_text="Name of the rule that judged it when it was made.")
    )
    def get_rule(self, request: AccessRequest) -> str:
        return str(request.rule_snapshot.get("name", ""))

    @extend_schema_field(StageSerializer(many=True))
    def get_stages(self, request: AccessRequest) -> list[dict[str, Any]]:
        return StageSerializer(request.stages, many=True).data  # type: ignore[return-value]  # a list

    @extend_schema_field(
        UserSummarySerializer(
            many=True, help_text="Who may decide the current stage, while it is pending."
        )
    )
    def get_stage_reviewers(self, request: AccessRequest) -> list[dict[str, Any]]:
        if not request.is_pending:
            return []
        # many=True: the data is a list, where the stubs say a dict.
        return UserSummarySerializer(request.reviewers, many=True).data  # type: ignore[return-value]

    @extend_schema_field(
        serializers.ListField(
            child=serializers.IntegerField(), help_text="Ids of the grants it gave."
        )
    )
    def get_granted(self, request: AccessRequest) -> list[int]:
        return [grant.pk for grant in request.granted.all()]


class RequestItemSerializer(serializers.Serializer):
    resource = serializers.IntegerField(help_text="Id of the resource.")
    access_level = serializers.IntegerField(help_text="Id of one of the resource's access levels.")
    duration_seconds = serializers.IntegerField(
        min_value=1,
        max_value=MAX_DURATION_SECONDS,
        allow_null=True,
        help_text=(
            "How long, in seconds; null for until revoked, where the rule allows it. The "
            "resource's request_rule lists the choices and the maximum."
        ),
    )


class RequestCreateSerializer(serializers.Serializer):
    items = RequestItemSerializer(many=True, help_text="One request is made per item, all or none.")
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    ticket = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    user = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text=(
            "Id of the person the access is for, when asking on their behalf (admins, the "
            "resource's owners and the person's manager may); the caller by default."
        ),
    )


class RequestsCreatedSerializer(serializers.Serializer):
    requests = AccessRequestSerializer(many=True, read_only=True)


class RequestInvalidSerializer(serializers.Serializer):
    """Why nothing was created: problems per item (keyed by its index) and of the whole."""

    # Not a DictField: input that is not a list of items at all gets DRF's own messages
    # ({"items": ["This field is required."]}, or by index and field), which the schema
    # must allow too.
    items = serializers.JSONField(
        required=False,
        help_text=(
            'Problems of each item, keyed by its index in "items" ("0", "1", ...); or what is '
            "wrong with items as a whole."
        ),
    )
    non_field_errors = serializers.ListField(child=serializers.CharField(), required=False)


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What was wrong, and what to do.")


# Grants -----------------------------------------------------------------------------------------
class RevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Why. Required, except when holders give up their own access.",
    )


class ExtendSerializer(serializers.Serializer):
    duration_seconds = serializers.IntegerField(
        min_value=1,
        max_value=MAX_DURATION_SECONDS,
        help_text="How much longer, in seconds, at most the rule's maximum.",
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    ticket = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
