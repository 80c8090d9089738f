"""Named leases on background loops, claimed by conditional update."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from access.models import Lease


def claim(name: str, duration: timedelta) -> tuple[str, str] | None:
    """Claims the lease for ``duration``; None when someone else holds it."""
    holder = uuid.uuid4().hex
    now = timezone.now()
    try:
        with transaction.atomic():
            Lease.objects.get_or_create(name=name)
    except IntegrityError:
        pass
    claimed = (
        Lease.objects.filter(name=name)
        .filter(Q(until__isnull=True) | Q(until__lt=now))
        .update(holder=holder, until=now + duration)
    )
    return (name, holder) if claimed else None


def release(lease: tuple[str, str]) -> None:
    name, holder = lease
    Lease.objects.filter(name=name, holder=holder).update(until=None, holder="")


def renew(lease: tuple[str, str], duration: timedelta) -> bool:
    """Extends a lease still held; False when it was lost (ran out and was taken)."""
    name, holder = lease
    return bool(
        Lease.objects.filter(name=name, holder=holder).update(until=timezone.now() + duration)
    )
