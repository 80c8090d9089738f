"""Request rules as owners edit them on the portal: a rule and its stages saved or deleted
together, with one audit event carrying the stages (inventory.request_rule.*), the same
event the admin records.

Every change, from the owners' pages or the admin, is first judged by
``check_rule_change``: an owner may not relax a rule, may not change whom a relaxing rule
applies to, its priority, whether it takes requests, or delete it, and may not make a relaxing rule the one that
judges their own requests (by adding, editing, re-prioritising or deleting another rule).
Otherwise an owner could give themselves access with nobody else's decision.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from access import permissions
from access.models import MAX_RULE_STAGES, Actor, RequestRule, Resource, User
from access.services.change_log import record_created, record_deleted, record_updated, snapshot
from access.services.requests import applicable_rule

RELATED = ("stages",)


def join_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _label(rule: RequestRule) -> str:
    return f"“{rule.name}”" if rule.name else (f"rule {rule.pk}" if rule.pk else "this rule")


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


def rule_change_problems(
    actor: User, resource: Resource, *, before: RequestRule | None, after: RequestRule | None
) -> list[str]:
    """Why ``actor`` may not change a rule of ``resource`` from ``before`` to ``after``
    (None: the rule is created, or deleted), as messages for them; empty when they may.

    Admins may make any change. Others may not: turn on a relaxation (see
    ``RequestRule.relaxations``); change a relaxing rule's requester group, priority or
    whether it takes requests (either way), lengthen its maximum, or delete it; or
    make a rule that relaxes anything the one that judges their own requests for this
    resource.
    """
    if permissions.can_relax_rules(actor):
        return []
    problems: list[str] = []
    if after is not None:
        had = set(before.relaxations()) if before is not None else set()
        gained = [r for r in after.relaxations() if r not in had]
        if gained:
            problems.append(
                f"Only an admin can make a rule that {join_words(gained)}; leave those settings "
                "as they are or ask an admin."
            )
    if before is not None and before.relaxations():
        relaxed = join_words(before.relaxations())
        if after is None:
            problems.append(
                f"Only an admin can delete {_label(before)}: it {relaxed}. Ask an admin."
            )
        elif (
            after.requester_group_id != before.requester_group_id
            or after.priority != before.priority
        ):
            problems.append(
                f"Only an admin can change whom {_label(before)} applies to or its priority: "
                f"it {relaxed}. Ask an admin."
            )
        elif after.allow_requests != before.allow_requests:
            # Both ways: an owner who stopped an admin's rule taking requests could not
            # start it again, and nobody could request the resource meanwhile.
            change = (
                f"let {_label(before)} take requests again"
                if after.allow_requests
                else f"stop {_label(before)} taking requests"
            )
            problems.append(f"Only an admin can {change}: it {relaxed}. Ask an admin.")
        elif (
            before.max_duration is not None
            and after.max_duration is not None
            and after.max_duration > before.max_duration
        ):
            problems.append(
                f"Only an admin can lengthen the maximum duration of {_label(before)}: it "
                f"{relaxed}. A shorter maximum is yours to set."
            )
    if problems:
        return problems
    # Which rule judges the actor's own requests, before and after the change.
    group_ids = set(actor.member_of.values_list("pk", flat=True))
    current = list(RequestRule.objects.filter(resource=resource))
    changed_pk = before.pk if before is not None else None
    then = [r for r in current if changed_pk is None or r.pk != changed_pk]
    if after is not None:
        then.append(after)
    now_judging = applicable_rule(current, group_ids)
    then_judging = applicable_rule(then, group_ids)
    if (
        then_judging is not None
        and then_judging.active_relaxations()
        and (now_judging is None or then_judging.pk != now_judging.pk or then_judging.pk is None)
    ):
        problems.append(
            f"This change would make {_label(then_judging)} judge your own requests for "
            f"{resource.name}, and it {join_words(then_judging.active_relaxations())}: you could "
            "then get access without anyone else deciding. Ask an admin to make this change."
        )
    return problems


def check_rule_change(
    actor: User, resource: Resource, *, before: RequestRule | None, after: RequestRule | None
) -> None:
    """Raises PermissionDenied when ``actor`` may not manage the resource's rules at all,
    and ValidationError (the messages of ``rule_change_problems``) for a change they may
    not make. The owners' pages and the admin both call it before saving or deleting."""
    if not permissions.can_manage_rules(actor, resource):
        raise PermissionDenied("Request rules are set by the resource's owners and admins.")
    problems = rule_change_problems(actor, resource, before=before, after=after)
    if problems:
        raise ValidationError(problems)


def _stages(rule: RequestRule) -> list[tuple[int, str, str]]:
    return sorted(rule.stages.values_list("order", "reviewers", "mode"))


def check_stage_change(
    actor: Actor,
    rule: RequestRule | None,
    *,
    before: list[tuple[int, str, str]],
    after: RequestRule,
) -> None:
    """While a rule lets a requester approve their own request, only admins change its
    stages: an owner who made the owners (or anyone they are) its reviewers would approve
    their own access. Called once the stages are saved, inside the save's transaction, so
    a refusal rolls them back. Raises ValidationError."""
    if permissions.can_relax_rules(actor) or rule is None or not rule.allow_self_approval:
        return
    if before != _stages(after):
        raise ValidationError(
            f"Only an admin can change who reviews {_label(rule)} or how: it "
            f"{join_words(rule.relaxations())}. Ask an admin."
        )


def _lock(resource: Resource) -> None:
    # Two changes judged at once could each leave the actor's own rule alone and together
    # not: the resource's rule changes are made one at a time.
    Resource.objects.select_for_update().filter(pk=resource.pk).first()


def save_request_rule(form: Any, stages: Any, *, actor: User) -> RequestRule:
    """Saves a validated rule form and its stage formset, once ``check_rule_change``
    allows the change (ValidationError or PermissionDenied otherwise, nothing saved)."""
    rule = form.instance
    with transaction.atomic():
        _lock(rule.resource)
        original = None
        before = None
        if rule.pk is not None:
            original = RequestRule.objects.get(pk=rule.pk)
            before = snapshot(original, related=RELATED)
        stages_before = _stages(original) if original is not None else []
        check_rule_change(actor, rule.resource, before=original, after=rule)
        rule.full_clean()
        rule = form.save()
        stages.instance = rule
        stages.save()
        check_stage_change(actor, original, before=stages_before, after=rule)
        after = snapshot(rule, related=RELATED)
        if before is None:
            record_created(rule, actor=actor, after=after)
        else:
            record_updated(rule, actor=actor, before=before, after=after)
    return rule


def delete_request_rule(rule: RequestRule, *, actor: User) -> str:
    """Deletes a rule with its stages, once ``check_rule_change`` allows it; returns its
    label."""
    with transaction.atomic():
        _lock(rule.resource)
        original = RequestRule.objects.get(pk=rule.pk)
        check_rule_change(actor, original.resource, before=original, after=None)
        before = snapshot(original, related=RELATED)
        label, rule_id = str(original), original.pk
        original.delete()
        original.pk = rule_id
        record_deleted(original, actor=actor, before=before, pk=rule_id, label=label)
    return label
