"""The permanent audit log."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from typing import Any

from django.conf import settings
from django.db import models

from audit.choices import ActorType

GENESIS_HASH = "0" * 64
_KEY_ID_MESSAGE = b"portcullis audit chain key id"


class UnknownChainKey(LookupError):
    """An event is keyed with a key that AUDIT_CHAIN_KEY does not hold."""


def key_id(key: bytes) -> str:
    """A short name for a chain key, stored with each event it signs; it reveals nothing of it."""
    return hmac.new(key, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]


@functools.cache
def _keys_by_id(keys: tuple[str, ...]) -> dict[str, bytes]:
    return {key_id(key.encode()): key.encode() for key in keys}


def chain_keys() -> dict[str, bytes]:
    """AUDIT_CHAIN_KEY's keys by key id; the first one signs, in insertion order."""
    return _keys_by_id(tuple(settings.AUDIT_CHAIN_KEY))


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("Audit events are never updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events are never deleted.")

    # bulk_update goes through update(); bulk_create would skip the chain.
    def bulk_create(self, *args: Any, **kwargs: Any) -> list:
        raise AppendOnlyError(
            "Audit events are recorded one by one with audit.services.record_event."
        )


class AuditEvent(models.Model):
    """One access or configuration change, chained to the previous event by SHA-256.

    Rows are append-only: the model refuses updates and deletes, and database
    triggers installed by the migrations refuse them too. ``hash`` covers the
    previous event's hash and the canonical JSON of this event's fields, so a
    row changed behind the triggers' back breaks the chain (``manage.py audit_verify``).

    With ``AUDIT_CHAIN_KEY`` set, events are chained with HMAC-SHA256 under that key
    instead, and ``key_id`` names the key: whoever can write to the database but does not
    hold the key cannot rehash the chain. Events written before the key was set keep
    their plain SHA-256 hash, and the first keyed event's HMAC covers the last of them.
    """

    occurred_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    # No database constraint: the event keeps the actor's id after the user is gone.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=255)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True, db_index=True)
    target_id = models.CharField(max_length=255, blank=True)
    target_label = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # Null: plain SHA-256 (events written without AUDIT_CHAIN_KEY).
    key_id = models.CharField(max_length=16, null=True, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
            models.Index(fields=["actor_name"], name="audit_actor_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target_label}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None or not self._state.adding:
            raise AppendOnlyError("Audit events are never updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events are never deleted.")

    def canonical_payload(self) -> dict[str, Any]:
        payload = {
            "occurred_at": self.occurred_at.isoformat(timespec="microseconds"),
            "actor_type": self.actor_type,
            "actor_id": self.actor_id,
            "actor_name": self.actor_name,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "target_label": self.target_label,
            "details": self.details,
            "request_id": self.request_id,
            "ip_address": self.ip_address,
        }
        # Only keyed events name their key, so events from before keys keep their hashes.
        if self.key_id is not None:
            payload["key_id"] = self.key_id
        return payload

    def compute_hash(self) -> str:
        """SHA-256, or HMAC-SHA256 under the key ``key_id`` names (UnknownChainKey if absent)."""
        body = json.dumps(
            self.canonical_payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        message = f"{self.prev_hash}\n{body}".encode()
        if self.key_id is None:
            return hashlib.sha256(message).hexdigest()
        key = chain_keys().get(self.key_id)
        if key is None:
            raise UnknownChainKey(
                f"event {self.pk} is keyed with key id {self.key_id}, which AUDIT_CHAIN_KEY "
                "does not hold"
            )
        return hmac.new(key, message, hashlib.sha256).hexdigest()
