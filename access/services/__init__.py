"""Workflows on users, roles, owners and inventory edits, each recorded in the audit log.

Every function that changes state records its events with ``audit.services.record_event``
inside one ``transaction.atomic()``, so a change and its event land together or not at all.
The admin and the user import call these functions; pages and the API will call them too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.admin.utils import NestedObjects
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, router, transaction

from access import permissions
from access.models import (
    MAX_RULE_STAGES,
    AccessLevel,
    Actor,
    ApiToken,
    App,
    Grant,
    Owner,
    RequestRule,
    RequestRuleStage,
    Resource,
    User,
    UserGroup,
)
from access.permissions import ADMIN_ROLE, ROLES
from audit.models import AuditEvent
from audit.services import record_event

# Fields never copied into the audit log: secrets, and values that change on their own
# (a login moves last_login) rather than by an edit.
SNAPSHOT_EXCLUDE: dict[type[models.Model], frozenset[str]] = {
    User: frozenset({"password", "last_login", "groups", "user_permissions"}),
    ApiToken: frozenset({"digest"}),
}

# The action prefix of each model's admin edits: "<prefix>.created|updated|deleted".
# Owners are special: their events are owner.added / owner.removed.
ACTION_PREFIXES: dict[type[models.Model], str] = {
    App: "inventory.app",
    Resource: "inventory.resource",
    AccessLevel: "inventory.access_level",
    RequestRule: "inventory.request_rule",
    RequestRuleStage: "inventory.request_rule_stage",
    UserGroup: "user_group",
    User: "user",
    Grant: "grant",
    ApiToken: "api_token",
}


# Snapshots and changes ----------------------------------------------------------
def _json_safe(value: Any) -> Any:
    # DjangoJSONEncoder writes datetimes, durations, decimals and UUIDs the way
    # Django's JSON serializer does; the round trip gives plain JSON types.
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def snapshot(obj: models.Model, *, related: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON-safe field values of ``obj``, as the audit log keeps them.

    Foreign keys are given as ids, many-to-many fields as sorted id lists (saved objects
    only), and each name in ``related`` (a reverse relation, such as a rule's ``stages``)
    as the list of its objects' snapshots. Fields updated automatically on every save
    (``auto_now``) and secrets are left out.
    """
    exclude = SNAPSHOT_EXCLUDE.get(type(obj), frozenset())
    data: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.name in exclude or getattr(field, "auto_now", False):
            continue
        data[field.name] = field.value_from_object(obj)
    if obj.pk is not None:
        for field in obj._meta.many_to_many:
            if field.name in exclude:
                continue
            data[field.name] = sorted(getattr(obj, field.name).values_list("pk", flat=True))
        for name in related:
            manager = getattr(obj, name)
            fk_name = manager.field.name
            data[name] = [
                {k: v for k, v in snapshot(child).items() if k not in ("id", fk_name)}
                for child in manager.all()
            ]
    return _json_safe(data)


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields whose values differ, as ``{field: {"from": old, "to": new}}``."""
    return {
        key: {"from": before.get(key), "to": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }


def action_prefix(model: type[models.Model]) -> str:
    return ACTION_PREFIXES.get(model, model._meta.label_lower)


def record_created(obj: models.Model, *, actor: Actor, after: dict[str, Any]) -> AuditEvent:
    """Records the creation of ``obj``; an owner's creation is recorded as owner.added."""
    if isinstance(obj, Owner):
        return _record_owner("owner.added", obj, actor=actor, values=after)
    return record_event(
        f"{action_prefix(type(obj))}.created", actor=actor, target=obj, details={"after": after}
    )


def record_updated(
    obj: models.Model, *, actor: Actor, before: dict[str, Any], after: dict[str, Any]
) -> list[AuditEvent]:
    """Records an edit of ``obj`` with its values before and after and the changed fields.

    Nothing is recorded when nothing changed. An owner that now names another user or
    group is recorded as the old owner removed and the new one added.
    """
    changes = changed_fields(before, after)
    if not changes:
        return []
    if isinstance(obj, Owner):
        return [
            _record_owner("owner.removed", obj, actor=actor, values=before),
            _record_owner("owner.added", obj, actor=actor, values=after),
        ]
    details = {"before": before, "after": after, "changes": changes}
    return [
        record_event(
            f"{action_prefix(type(obj))}.updated", actor=actor, target=obj, details=details
        )
    ]


def cascade_snapshot(obj: models.Model) -> dict[str, list[dict[str, Any]]]:
    """What deleting ``obj`` removes with it (the rows its deletion cascades to, at any
    depth), as model label -> snapshots ordered by id; read before the deletion."""
    collector = NestedObjects(using=router.db_for_write(type(obj), instance=obj))
    collector.collect([obj])
    # obj itself, and the rows of the parent models it inherits from (the same object).
    itself = {type(obj), *obj._meta.get_parent_list()}
    cascaded: dict[str, list[dict[str, Any]]] = {}
    for model, instances in collector.data.items():
        rows = [
            snapshot(child)
            for child in sorted(instances, key=lambda child: child.pk)
            if not (model in itself and child.pk == obj.pk)
        ]
        if rows:
            cascaded[model._meta.label_lower] = rows
    return dict(sorted(cascaded.items()))


def record_deleted(
    obj: models.Model,
    *,
    actor: Actor,
    before: dict[str, Any],
    pk: Any,
    label: str,
    cascaded: dict[str, list[dict[str, Any]]] | None = None,
) -> AuditEvent:
    """Records the deletion of ``obj`` (already deleted: its id and label are passed in),
    with ``cascaded``, the snapshots of the rows removed with it (cascade_snapshot)."""
    if isinstance(obj, Owner):
        return _record_owner("owner.removed", obj, actor=actor, values=before, label=label)
    details: dict[str, Any] = {"before": before}
    if cascaded:
        details["cascaded"] = cascaded
    return record_event(
        f"{action_prefix(type(obj))}.deleted",
        actor=actor,
        target_type=obj._meta.label_lower,
        target_id=pk,
        target_label=label,
        details=details,
    )


# Owners -----------------------------------------------------------------------
def _record_owner(
    action: str, owner: Owner, *, actor: Actor, values: dict[str, Any], label: str = ""
) -> AuditEvent:
    # The resource is the target, so a resource's history shows who owned it when.
    resource_id: Any = values.get("resource")  # None finds no resource
    resource = Resource.objects.filter(pk=resource_id).only("name", "type").first()
    owner_label = label or _owner_label(values)
    return record_event(
        action,
        actor=actor,
        target_type=Resource._meta.label_lower,
        target_id=resource_id or "",
        target_label=str(resource) if resource else "",
        details={
            "owner_id": owner.pk if owner.pk is not None else values.get("id"),
            "owner": owner_label,
            "user": values.get("user"),
            "group": values.get("group"),
        },
    )


def _owner_label(values: dict[str, Any]) -> str:
    if values.get("user"):
        user = User.objects.filter(pk=values["user"]).first()
        return str(user) if user else f"user {values['user']}"
    if values.get("group"):
        group = UserGroup.objects.filter(pk=values["group"]).first()
        return str(group) if group else f"group {values['group']}"
    return ""


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
        _record_owner("owner.added", owner, actor=actor, values=snapshot(owner))
    return owner


def remove_owner(owner: Owner, *, actor: Actor) -> None:
    """Ends an ownership."""
    with transaction.atomic():
        before = snapshot(owner)
        label = str(owner)
        pk = owner.pk
        owner.delete()
        owner.pk = pk
        _record_owner("owner.removed", owner, actor=actor, values=before, label=label)


# Roles ------------------------------------------------------------------------
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


# Users ------------------------------------------------------------------------
_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")


def default_username(email: str, *, exclude_pk: int | None = None) -> str:
    """A free username for a user with this email: the part before the @, or the whole
    email when another user already has that name."""
    email = email.strip().lower()
    local = _USERNAME_UNSAFE.sub("_", email.split("@", 1)[0]) or "user"
    taken = User.objects.exclude(pk=exclude_pk) if exclude_pk else User.objects.all()
    for candidate in (local, _USERNAME_UNSAFE.sub("_", email)):
        if candidate and not taken.filter(username__iexact=candidate).exists():
            return candidate[:150]
    suffix = 2
    while taken.filter(username__iexact=f"{local}{suffix}").exists():
        suffix += 1
    return f"{local}{suffix}"[:150]


# Request rules ----------------------------------------------------------------
def rule_stage_problems(
    *, allow_requests: bool, auto_approve: bool, orders: list[int], can_relax: bool = True
) -> list[str]:
    """What is wrong with a rule's approval stages, as messages for the person editing it
    (``can_relax``: whether they may tick auto-approve, which the messages then offer).

    A rule that takes requests and does not approve them automatically needs 1 to 3
    stages numbered 1, 2, 3 in order; an auto-approving rule has none.
    """
    if auto_approve:
        if orders:
            return [
                "An auto-approving rule has no approval stages: remove the stages, "
                "or untick auto-approve."
            ]
        return []
    if not allow_requests:
        return []
    if not orders:
        return [
            "A rule that is not auto-approved needs at least one approval stage: "
            "add a stage (who approves, any or all)"
            + (", or tick auto-approve." if can_relax else ".")
        ]
    problems = []
    if len(orders) > MAX_RULE_STAGES:
        problems.append(
            f"A rule has at most {MAX_RULE_STAGES} approval stages; this has {len(orders)}."
        )
    duplicates = sorted({o for o in orders if orders.count(o) > 1})
    if duplicates:
        problems.append(
            "Each stage needs its own order; "
            + ", ".join(str(o) for o in duplicates)
            + " is used more than once."
        )
    expected = list(range(1, len(set(orders)) + 1))
    if not duplicates and sorted(orders) != expected:
        problems.append(
            "Number the stages "
            + ", ".join(str(o) for o in expected)
            + f" in order, without gaps; they are numbered {', '.join(str(o) for o in sorted(orders))}."
        )
    return problems
