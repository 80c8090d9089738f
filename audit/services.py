"""Recording and verifying audit events.

``record_event`` is the only way events are written. It joins the caller's
transaction, so the event lands if and only if the change it describes does.
Concurrent writers are serialised while they extend the chain: a transaction
advisory lock on PostgreSQL; on SQLite every transaction already holds the
write lock from its start (``transaction_mode = IMMEDIATE`` in settings).
Either lock is held until the transaction ends, so a transaction that has
written an event still holds it: its next event links to the hash it wrote
last, with no second lock and no read of the chain's head.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from audit import context
from audit.choices import ActorType
from audit.models import (
    GENESIS_HASH,
    AuditEvent,
    AuditEventQuerySet,
    UnknownChainKey,
    chain_keys,
)

# Stable key for pg_advisory_xact_lock: "audit" in ASCII.
_CHAIN_LOCK_KEY = 0x6175646974
REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(^|_)(secret|password|passwd|passphrase|token|credentials?|private_key|api_key|"
    r"access_key|secret_access_key|session_token|client_secret|encryption_key|signing_key|"
    r"authorization|cookie)(_|\d|$)",
    re.IGNORECASE,
)
# AWS and most JSON APIs spell keys in CamelCase (SecretAccessKey, SessionToken) or
# with hyphens (X-Api-Key); matching is done on the snake_case form of the key.
_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|-")
_MAX_LABEL = 500
# Events inserted per statement by record_events.
_BULK_SIZE = 500


# Keys repeat (a sync writes thousands of events with the same few): decide each once.
@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(_WORD_BOUNDARY.sub("_", key)))


def redact(value: Any) -> Any:
    """Replaces the values of secret-looking keys, at any depth, by a marker."""
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and _is_secret_key(k) and v not in (None, "")
                else redact(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _parse_float(text: str) -> float | int:
    # PostgreSQL's jsonb keeps numbers as numeric and prints 1e+20 back as
    # 100000000000000000000, which json reads as an int: store such floats (json
    # writes an exponent only from 1e16 on, where every float is integral) as the
    # int of their decimal text, as numeric does, so the hash survives the round trip.
    if "e+" in text.lower():
        return int(Decimal(text))
    return float(text)


def _json_normalise(value: Any) -> Any:
    # Round-trip so the hashed form equals what the database gives back.
    return json.loads(json.dumps(value, default=str, sort_keys=True), parse_float=_parse_float)


def _normalise_ip(ip_address: str | None) -> str | None:
    # Stored the way the column stores it (IPv4-mapped IPv6 as ::ffff:a.b.c.d),
    # so the hash computed here matches the row read back.
    if not ip_address:
        return None
    return AuditEvent._meta.get_field("ip_address").to_python(ip_address)


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


class _ChainHead:
    """A commit callback that does nothing: it carries the hash of an event this
    transaction wrote, and lives exactly as long as that event may still commit.

    Django drops a commit callback when the transaction, or a savepoint the callback was
    registered under, rolls back, and forgets it once the transaction commits; the lock
    taken before the event (advisory or SQLite's) is released at the same moments (a
    PostgreSQL lock taken under a savepoint goes when it rolls back). So while one of
    these is pending, this transaction holds the chain's lock, and the newest of them
    names the chain's head: nobody else can have written after it."""

    __slots__ = ("hash",)

    def __init__(self, hash: str) -> None:
        self.hash = hash

    def __call__(self) -> None:
        pass


def _head_written_here() -> str | None:
    """The hash of the newest event this transaction wrote and may still commit, if any."""
    # Django's own list of (savepoint ids, callback, robust); the stubs know two fields.
    for _sids, callback, _robust in reversed(connection.run_on_commit):  # type: ignore[misc]
        if isinstance(callback, _ChainHead):
            return callback.hash
    return None


def _extend_chain(rows: list[AuditEvent], write: Any) -> list[AuditEvent]:
    """Links ``rows`` after the chain's head and writes them with ``write``, inside the
    caller's transaction (one is opened if there is none, with no savepoint in one: an
    event that fails to be written fails the change it describes)."""
    with transaction.atomic(savepoint=False):
        head = _head_written_here()
        if head is None:
            _lock_chain()
            head = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        _chain(rows, head or GENESIS_HASH)
        write(rows)
        transaction.on_commit(_ChainHead(rows[-1].hash))
    return rows


@dataclass(frozen=True)
class PendingEvent:
    """One event for :func:`record_events`: what ``record_event`` takes besides the actor."""

    action: str
    target_type: str = ""
    target_id: str | int = ""
    target_label: str = ""
    details: dict[str, Any] | None = None

    @classmethod
    def about(
        cls, action: str, target: models.Model, details: dict[str, Any] | None = None
    ) -> PendingEvent:
        """An event about ``target``, with its fields filled as ``record_event`` fills them."""
        return cls(action, target._meta.label_lower, target.pk, str(target), details)


def record_event(
    action: str,
    *,
    actor: Any = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str | int = "",
    target_label: str = "",
    details: dict[str, Any] | None = None,
    actor_name: str = "",
) -> AuditEvent:
    """Appends one event to the chain inside the current transaction.

    ``actor`` is a user, or None for the system. ``target`` (a model instance)
    fills the target fields unless they are given. Secret-looking keys in
    ``details`` are redacted before anything is stored.
    """
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or target.pk
        target_label = target_label or str(target)
    pending = PendingEvent(action, target_type, target_id, target_label, details)
    rows = _new_events([pending], actor=actor, actor_name=actor_name)
    return _extend_chain(rows, lambda rows: rows[0].save())[0]


def record_events(
    events: Sequence[PendingEvent], *, actor: Any = None, actor_name: str = ""
) -> list[AuditEvent]:
    """Appends ``events``, in order, inside the current transaction, as one call of
    ``record_event`` each would, but with one lock, one read of the chain's head and
    inserts of many rows at a time: for the thousands of rows a sync writes."""
    if not events:
        return []
    return _extend_chain(_new_events(events, actor=actor, actor_name=actor_name), _insert_many)


def _insert_many(rows: list[AuditEvent]) -> None:
    for start in range(0, len(rows), _BULK_SIZE):
        # The model's manager refuses bulk_create to everyone else: this is the chain.
        created = super(AuditEventQuerySet, AuditEvent.objects.all()).bulk_create(
            rows[start : start + _BULK_SIZE]
        )
        ids = [row.pk for row in created]
        # The chain is ordered by id: the rows must have been numbered as listed.
        if None in ids or ids != sorted(ids):
            raise RuntimeError("Audit events were not numbered in the order given.")


def _new_events(events: Sequence[PendingEvent], *, actor: Any, actor_name: str) -> list[AuditEvent]:
    ctx = context.current()
    if actor is not None and getattr(actor, "is_authenticated", False):
        actor_type = ActorType.API if ctx.via_api_token else ActorType.USER
        actor_id = actor.pk
        name = actor_name or actor.get_username()
    else:
        actor_type = ActorType.SYSTEM
        actor_id = None
        name = actor_name or "system"
    now = timezone.now()
    ip_address = _normalise_ip(ctx.ip_address)
    key_id = next(iter(chain_keys()), None)
    rows = []
    for pending in events:
        payload = _json_normalise(redact(pending.details or {}))
        if ctx.via_api_token:
            payload.setdefault("api_token", ctx.via_api_token)
        rows.append(
            AuditEvent(
                occurred_at=now,
                actor_type=actor_type,
                actor_id=actor_id,
                actor_name=name[:255],
                action=pending.action,
                target_type=pending.target_type,
                target_id=str(pending.target_id),
                target_label=str(pending.target_label)[:_MAX_LABEL],
                details=payload,
                request_id=ctx.request_id,
                ip_address=ip_address,
                key_id=key_id,
            )
        )
    return rows


def _chain(rows: list[AuditEvent], prev: str) -> list[AuditEvent]:
    """Links ``rows`` after the event whose hash is ``prev``; the caller holds the chain
    lock."""
    for row in rows:
        row.prev_hash = prev
        row.hash = prev = row.compute_hash()
    return rows


@dataclass(frozen=True)
class ChainProblem:
    event_id: int
    reason: str


def verify_chain(chunk_size: int = 5000) -> Iterator[int | ChainProblem]:
    """Walks the chain in order, yielding each verified id, or the first problem and stopping.

    Once one event is keyed (AUDIT_CHAIN_KEY), every later one must be; and while a key is
    set, the newest event must be keyed, or the keyed part of the chain could have been
    rewritten as plain SHA-256 by someone without the key."""
    expected_prev = GENESIS_HASH
    keyed_since: int | None = None
    pending: AuditEvent | None = None  # the newest event is checked once it is known to be so
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=chunk_size):
        if pending is not None:
            yield pending.id
        if event.prev_hash != expected_prev:
            yield ChainProblem(
                event.id,
                "its prev_hash does not match the hash of the event before it "
                "(an event was removed or inserted)",
            )
            return
        if event.key_id is None and keyed_since is not None:
            yield ChainProblem(
                event.id,
                f"it is not keyed, but event {keyed_since} before it is (the chain was "
                "rehashed by someone without AUDIT_CHAIN_KEY)",
            )
            return
        try:
            matches = event.compute_hash() == event.hash
        except UnknownChainKey as exc:
            yield ChainProblem(
                event.id, f"{exc}: set AUDIT_CHAIN_KEY to the key that signed it, to verify it"
            )
            return
        if not matches:
            yield ChainProblem(event.id, "its contents do not match its hash (the row was changed)")
            return
        if event.key_id is not None and keyed_since is None:
            keyed_since = event.id
        expected_prev = event.hash
        pending = event
    if pending is None:
        return
    if pending.key_id is None and chain_keys():
        yield ChainProblem(
            pending.id,
            "AUDIT_CHAIN_KEY is set but the newest event is not keyed: either no event has "
            "been written since the key was set, or the keyed events were removed or "
            "rehashed by someone without the key. Check with --expect-head against a head "
            "kept elsewhere before writing one: the next keyed event would cover the tail",
        )
        return
    yield pending.id
