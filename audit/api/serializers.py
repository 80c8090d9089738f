from __future__ import annotations

from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    """One audit event as stored, with its place in the hash chain."""

    actor_id = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The acting user's id; null for the system."
    )
    details = serializers.DictField(
        read_only=True, help_text="Before/after values and context; secrets are redacted."
    )

    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "occurred_at",
            "actor_type",
            "actor_id",
            "actor_name",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "details",
            "request_id",
            "ip_address",
            "prev_hash",
            "hash",
            "key_id",
        )
        read_only_fields = fields
