"""Leases: the one way Portcullis makes sure only one of its processes does a thing at a time.

A lease is a row of ``Lease`` named for what it guards (see :func:`name`): the grant
engine, one app's events poller, one assignment being reconciled, one shared document in
the provider being edited. It is claimed by a conditional write (free, or run out), held
for a length of time, renewed while the work goes on, and released at the end. A process
that dies simply stops renewing: its lease runs out and another takes over.

Use :func:`hold` around the work: it claims, renews on a thread while the body runs, and
releases on the way out::

    with leases.hold(leases.name(LeaseKind.ENGINE), timedelta(seconds=2)) as lease:
        if lease is None:
            return  # someone else holds it
        while not lease.lost.is_set():
            ...
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from django.db import DatabaseError, connection
from django.utils import timezone

from access.models import Lease

logger = logging.getLogger(__name__)


class LeaseKind(StrEnum):
    """What a lease guards; the first part of its name."""

    ENGINE = "engine"  # the grant engine's loop: one per deployment
    POLLER = "poller"  # an app's events poller: name("poller", app id)
    ASSIGNMENT = "assignment"  # an assignment being reconciled: name("assignment", pk)
    LOCK = "lock"  # a shared document in the provider: name("lock", driver's lock key)


def name(kind: LeaseKind, key: object = None) -> str:
    """The lease name for ``kind`` (and its key): "engine", "poller:3", "assignment:42"."""
    return str(kind) if key is None else f"{kind}:{key}"


@dataclass
class Held:
    """A lease this process holds. ``lost`` is set when a renewal finds it taken."""

    name: str
    holder: str
    lost: threading.Event = field(default_factory=threading.Event, compare=False)


def _holder() -> str:
    # Who holds it, for the admin and logs, plus a unique part that identifies this claim.
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


def claim(lease_name: str, length: timedelta) -> Held | None:
    """Claims the lease for ``length``; None when someone else holds it.

    One statement: it makes the row, or takes it over when it is free or ran out (an upsert
    whose update is conditional), and answers whether it did, on SQLite and PostgreSQL."""
    holder = _holder()
    now = timezone.now()
    ops = connection.ops
    table = ops.quote_name(Lease._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (name, holder, until) VALUES (%s, %s, %s) "  # noqa: S608 - the table's own name
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until "
            f"WHERE {table}.until IS NULL OR {table}.until <= %s RETURNING holder",
            [
                lease_name,
                holder,
                ops.adapt_datetimefield_value(now + length),
                ops.adapt_datetimefield_value(now),
            ],
        )
        taken = cursor.fetchone()
    return Held(lease_name, holder) if taken is not None else None


def renew(lease: Held, length: timedelta) -> bool:
    """Extends a lease still held; False (and ``lease.lost`` set) when it was lost: it ran
    out and someone else took it."""
    renewed = Lease.objects.filter(name=lease.name, holder=lease.holder).update(
        until=timezone.now() + length
    )
    if not renewed:
        lease.lost.set()
    return bool(renewed)


def release(lease: Held) -> None:
    """Gives the lease up at once (nothing happens if it was lost meanwhile)."""
    Lease.objects.filter(name=lease.name, holder=lease.holder).delete()


def held_by(lease_name: str) -> str | None:
    """Who holds the lease now ("host:pid:claim"), or None when it is free or ran out."""
    return (
        Lease.objects.filter(name=lease_name, until__gt=timezone.now())
        .values_list("holder", flat=True)
        .first()
    )


def is_held(lease_name: str) -> bool:
    return held_by(lease_name) is not None


def held_names(names: list[str]) -> set[str]:
    """Which of these leases are held now (one query)."""
    return set(
        Lease.objects.filter(name__in=names, until__gt=timezone.now()).values_list(
            "name", flat=True
        )
    )


class _Renewer:
    """Renews a held lease on its own thread every quarter of its length until stopped."""

    def __init__(self, lease: Held, length: timedelta) -> None:
        self.lease = lease
        self.length = length
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"lease {lease.name}", daemon=True)

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.length.total_seconds() / 4):
                try:
                    if not renew(self.lease, self.length):
                        logger.warning("Lost the lease %s.", self.lease.name)
                        return
                except DatabaseError:
                    # Tried again next beat; the lease lasts four beats.
                    logger.warning("Could not renew the lease %s.", self.lease.name, exc_info=True)
        finally:
            connection.close()  # this thread's own connection, if it opened one


@contextmanager
def hold(lease_name: str, length: timedelta) -> Iterator[Held | None]:
    """Claims the lease, renews it while the body runs, and releases it at the end. Yields
    None (and does nothing more) when someone else holds it."""
    lease = claim(lease_name, length)
    if lease is None:
        yield None
        return
    renewer = _Renewer(lease, length)
    renewer.thread.start()
    try:
        yield lease
    finally:
        renewer.stopped.set()
        renewer.thread.join()
        release(lease)  # only our own claim: a lease lost and taken by another stays theirs
