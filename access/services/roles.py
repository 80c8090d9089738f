"""Giving people the portal's roles (Admin, Auditor): parsed from an import's cell or a
form, set all at once, each grant and removal recorded."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from access import permissions
from access.models import Actor, User
from access.permissions import ADMIN_ROLE, ROLES
from audit.services import record_event


@dataclass(frozen=True)
class RoleChange:
    granted: tuple[str, ...]
    revoked: tuple[str, ...]


def parse_roles(value: str | Iterable[str | Group] | None) -> list[str]:
    """Role names from a cell such as "Admin, Auditor" (or a list of names or groups),
    spelled as the roles are; an unknown name is a ValidationError naming it."""
    if value is None:
        return []
    items: Iterable[str | Group]
    items = re.split(r"[,;|]", value) if isinstance(value, str) else value
    by_lower = {role.lower(): role for role in ROLES}
    names: list[str] = []
    for item in items:
        name = (item.name if isinstance(item, Group) else str(item)).strip()
        if not name:
            continue
        role = by_lower.get(name.lower())
        if role is None:
            raise ValidationError(
                f"Unknown role {name!r}: roles are {', '.join(ROLES)} (or empty for none)."
            )
        if role not in names:
            names.append(role)
    return names


def set_user_roles(user: User, roles: str | Iterable[str | Group], *, actor: Actor) -> RoleChange:
    """Gives ``user`` exactly these roles, recording role.granted / role.revoked per change.

    Admins cannot take their own Admin role away, so the portal is never left without
    the admin who was using it; another admin can.
    """
    wanted = set(parse_roles(roles))
    with transaction.atomic():
        current = permissions.role_names(user)
        granted = tuple(sorted(wanted - current))
        revoked = tuple(sorted(current - wanted))
        if ADMIN_ROLE in revoked and actor is not None and getattr(actor, "pk", None) == user.pk:
            raise ValidationError(
                "You cannot remove your own Admin role; ask another admin to do it."
            )
        groups = {g.name: g for g in Group.objects.filter(name__in=granted + revoked)}
        missing = [name for name in granted if name not in groups]
        if missing:
            raise ValidationError(
                f"The role group {', '.join(missing)} does not exist; run manage.py migrate."
            )
        if granted:
            user.groups.add(*(groups[name] for name in granted))
        if revoked:
            user.groups.remove(*(groups[name] for name in revoked))
        for name in granted:
            record_event("role.granted", actor=actor, target=user, details={"role": name})
        for name in revoked:
            record_event("role.revoked", actor=actor, target=user, details={"role": name})
    # permissions.roles_of caches the roles on the object for the request.
    if hasattr(user, "_portcullis_roles"):
        del user._portcullis_roles
    return RoleChange(granted=granted, revoked=revoked)
