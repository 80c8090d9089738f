"""Request rules as owners edit them on the portal: a rule and its stages saved or deleted
together, with one audit event carrying the stages (inventory.request_rule.*), the same
event the admin records."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from access import services
from access.models import RequestRule

RELATED = ("stages",)


def save_request_rule(form: Any, stages: Any, *, actor: Any) -> RequestRule:
    """Saves a validated rule form and its stage formset."""
    with transaction.atomic():
        before = None
        if form.instance.pk is not None:
            original = RequestRule.objects.get(pk=form.instance.pk)
            before = services.snapshot(original, related=RELATED)
        rule = form.save()
        stages.instance = rule
        stages.save()
        after = services.snapshot(rule, related=RELATED)
        if before is None:
            services.record_created(rule, actor=actor, after=after)
        else:
            services.record_updated(rule, actor=actor, before=before, after=after)
    return rule


def delete_request_rule(rule: RequestRule, *, actor: Any) -> str:
    """Deletes a rule with its stages; returns its label."""
    with transaction.atomic():
        before = services.snapshot(rule, related=RELATED)
        label, rule_id = str(rule), rule.pk
        rule.delete()
        rule.pk = rule_id
        services.record_deleted(rule, actor=actor, before=before, pk=rule_id, label=label)
    return label
