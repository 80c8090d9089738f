"""Edits recorded in the audit log: JSON-safe snapshots of a row, the changes between two,
and the created / updated / deleted events the admin, the user import, the rule pages and
the demo write for each edit (owners as owner.added / owner.removed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.contrib.admin.utils import NestedObjects
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, router

from access.models import (
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
        return record_owner_event("owner.added", obj, actor=actor, values=after)
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
            record_owner_event("owner.removed", obj, actor=actor, values=before),
            record_owner_event("owner.added", obj, actor=actor, values=after),
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
        return record_owner_event("owner.removed", obj, actor=actor, values=before, label=label)
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


def record_owner_event(
    action: str, owner: Owner, *, actor: Actor, values: dict[str, Any], label: str = ""
) -> AuditEvent:
    """Records owner.added or owner.removed for ``owner`` with its ``values`` (a snapshot).
    The resource is the target, so a resource's history shows who owned it when."""
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
