"""Owners of a resource (a user or a group): they approve its requests and review its
access. Each change is recorded as owner.added / owner.removed."""

from __future__ import annotations

from django.db import transaction

from access.models import Actor, Owner, Resource, User, UserGroup
from access.services.change_log import record_owner_event, snapshot


def add_owner(
    resource: Resource,
    *,
    user: User | None = None,
    group: UserGroup | None = None,
    actor: Actor,
) -> Owner:
    """Makes a user or a group an owner of ``resource`` (they approve and review its access)."""
    owner = Owner(resource=resource, user=user, group=group)
    owner.full_clean()
    with transaction.atomic():
        owner.save()
        record_owner_event("owner.added", owner, actor=actor, values=snapshot(owner))
    return owner


def remove_owner(owner: Owner, *, actor: Actor) -> None:
    """Ends an ownership."""
    with transaction.atomic():
        before = snapshot(owner)
        label = str(owner)
        pk = owner.pk
        owner.delete()
        owner.pk = pk
        record_owner_event("owner.removed", owner, actor=actor, values=before, label=label)
