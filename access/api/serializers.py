"""Read shapes of the access API, and the one write shape (creating a token)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from access import permissions, tokens
from access.models import (
    AccessLevel,
    ApiToken,
    App,
    Grant,
    Owner,
    Resource,
    User,
    UserGroup,
)


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


class ResourceDetailSerializer(ResourceSerializer):
    access_levels = AccessLevelSerializer(many=True, read_only=True)
    owners = OwnerSerializer(many=True, read_only=True)

    class Meta(ResourceSerializer.Meta):
        fields = [*ResourceSerializer.Meta.fields, "metadata", "access_levels", "owners"]
        read_only_fields = fields


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
            "created_at",
        ]
        read_only_fields = fields


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
        max_value=tokens.MAX_EXPIRY_DAYS,
        required=False,
        allow_null=True,
        help_text=f"From 1 to {tokens.MAX_EXPIRY_DAYS}; omit or null for a token that does not expire.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["expires_at"] = tokens.expiry_in_days(attrs.get("expires_in_days"))
        # A token may mint tokens, but none that outlives it: otherwise a leaked
        # short-lived token could be turned into a permanent one.
        caller = self.context["request"].auth
        outlives = isinstance(caller, ApiToken) and (
            caller.expires_at is not None
            and (attrs["expires_at"] is None or attrs["expires_at"] > caller.expires_at)
        )
        if outlives:
            raise serializers.ValidationError(
                {
                    "expires_in_days": (
                        "A token created with an API token cannot outlive it: this one expires "
                        f"at {caller.expires_at.isoformat(timespec='minutes')}. Choose a shorter "
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
