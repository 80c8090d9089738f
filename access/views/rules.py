"""A resource's request rules, as its owners (and admins) see and edit them. Each change is
recorded in the audit log as the admin records it (inventory.request_rule.*, the stages
part of the rule's values)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from access import permissions
from access.forms import RequestRuleForm, StageFormSet
from access.models import RequestRule, Resource
from access.services import rules as rule_service
from access.services.requests import EffectiveRule
from access.views.catalogue import visible_resource
from access.views.common import render_page


def _managed_resource(request: HttpRequest, pk: int) -> Resource:
    resource = visible_resource(request, pk)
    if not permissions.can_manage_rules(request.user, resource):
        raise PermissionDenied("Request rules are set by the resource's owners and admins.")
    return resource


@login_required
@require_GET
def rule_list(request: HttpRequest, pk: int) -> HttpResponse:
    resource = _managed_resource(request, pk)
    rules = list(
        resource.request_rules.select_related("requester_group")
        .prefetch_related("stages")
        .annotate(stage_count=Count("stages"))
        .order_by("-priority", "id")
    )
    can_relax = permissions.can_relax_rules(request.user)
    for rule in rules:
        rule.lines = EffectiveRule.of(rule).describe()  # type: ignore[attr-defined]
        rule.admin_only = not can_relax and bool(rule.relaxations())  # type: ignore[attr-defined]
    return render_page(request, "access/rules.html", {"resource": resource, "rules": rules})


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, pk: int, rule_pk: int | None = None) -> HttpResponse:
    resource = _managed_resource(request, pk)
    rule = (
        get_object_or_404(RequestRule, pk=rule_pk, resource=resource)
        if rule_pk is not None
        else RequestRule(resource=resource)
    )
    data = request.POST if request.method == "POST" else None
    can_relax = permissions.can_relax_rules(request.user)
    form = RequestRuleForm(data, instance=rule, can_relax=can_relax)
    stages = StageFormSet(data, instance=rule, prefix="stages", can_relax=can_relax)
    if request.method == "POST":
        # The form first: it sets the rule's flags that the stage check reads.
        form_ok = form.is_valid()
        stages_ok = stages.is_valid()
        if form_ok and stages_ok:
            try:
                saved = rule_service.save_request_rule(
                    form, stages, actor=permissions.signed_in(request.user)
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, f"Saved the request rule “{saved}”.")
                return HttpResponseRedirect(reverse("resource-rules", args=[resource.pk]))
    context = {"resource": resource, "rule": rule, "form": form, "stages": stages}
    status = 400 if request.method == "POST" else 200
    return render_page(request, "access/rule_form.html", context, status=status)


@login_required
@require_POST
def rule_delete(request: HttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    resource = _managed_resource(request, pk)
    rule = get_object_or_404(RequestRule, pk=rule_pk, resource=resource)
    try:
        label = rule_service.delete_request_rule(rule, actor=permissions.signed_in(request.user))
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"Deleted the request rule “{label}”.")
    return HttpResponseRedirect(reverse("resource-rules", args=[resource.pk]))
