"""Asking for access, following one's requests, and deciding them (request page and the
approvals queue). Every change goes through access.services.requests."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q, prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from access import permissions
from access.choices import RequestStatus
from access.forms import DecisionForm, RequestDetailsForm
from access.humanize import humanize
from access.models import AccessRequest, Grant, Resource, User
from access.querysets import current_reviewers
from access.services import requests as request_service
from access.views.common import (
    duration_options,
    int_or_none,
    parse_duration,
    render_page,
    reviewing,
    safe_next,
)

PAGE_SIZE = 50
QUEUE_SIZE = 100
# The "on behalf of" list is a plain select; past this many people it shows the first ones.
ON_BEHALF_SHOWN = 1000


# Asking ---------------------------------------------------------------------------------------
def _on_behalf_choices(user: User, resources: list[Resource]) -> list[User]:
    """Whom the user may ask for: anyone when they are an admin or an owner of one of the
    resources, else their reports."""
    if any(permissions.can_request_for_anyone(user, r) for r in resources):
        return list(User.objects.filter(is_active=True).order_by("email")[:ON_BEHALF_SHOWN])
    reports = list(user.reports.filter(is_active=True).order_by("email"))
    return [user, *reports] if reports else []


def _form_rows(
    request: HttpRequest,
    resource_ids: list[str],
    target: User,
    posted: dict[int, dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], list[Resource], User]:
    """One row per asked-for resource, with its levels and the durations its rule offers,
    for ``target``; and the person the form is for, as shown: the signed-in user, unless
    they may ask for ``target`` for every resource (a refused on-behalf submission shows
    nothing of the person it named: what they hold, their rule, whether they exist)."""
    pks = [pk for pk in (int_or_none(r) for r in resource_ids) if pk is not None]
    found = {
        r.pk: r
        for r in Resource.objects.visible_to(request.user)
        .filter(pk__in=pks)
        .select_related("app")
        .prefetch_related("access_levels")
    }
    signed_in = permissions.signed_in(request.user)
    if target.pk != signed_in.pk and not (
        target.is_active
        and all(permissions.can_request_for(signed_in, target, r) for r in found.values())
    ):
        target = signed_in
    # What the person asked for already holds or waits for there: said on the form, so that
    # nobody asks twice without knowing (a second pending request is refused on submit).
    held: dict[int, list[Grant]] = defaultdict(list)
    for grant in (
        Grant.objects.current()
        .filter(user=target, resource_id__in=list(found))
        .select_related("access_level")
        .order_by("resource_id", "access_level__name", "pk")
    ):
        held[grant.resource_id].append(grant)
    waiting: dict[int, list[AccessRequest]] = defaultdict(list)
    for pending in (
        AccessRequest.objects.filter(
            user=target, resource_id__in=list(found), status=RequestStatus.PENDING
        )
        .select_related("access_level")
        .order_by("resource_id", "pk")
    ):
        waiting[pending.resource_id].append(pending)
    rows, resources = [], []
    for index, raw in enumerate(resource_ids):
        resource = found.get(int_or_none(raw) or 0)
        row: dict[str, Any] = {"index": index, "raw_id": raw, "resource": resource}
        if resource is not None:
            row |= {"held": held.get(resource.pk, []), "waiting": waiting.get(resource.pk, [])}
            resources.append(resource)
            rule = request_service.rule_for(resource, target)
            chosen = (posted or {}).get(index, {})
            # Levels the provider will not grant (an untagged permission set) are not offered.
            levels = [
                lv
                for lv in resource.access_levels.all()
                if lv.deleted_at is None and not lv.not_requestable_reason
            ]
            duration = chosen.get("duration", rule.default_duration)
            row |= {
                "rule": rule,
                "rule_lines": rule.describe(resource, target),
                "levels": levels,
                "level_id": chosen.get("level_id", levels[0].pk if len(levels) == 1 else None),
                "durations": duration_options(rule.duration_choices(), duration),
                "deleted": resource.deleted_at is not None,
                # As sync found it (an untagged role, the management account): nothing
                # to choose, the form says why instead.
                "refusal": resource.not_requestable_reason,
            }
        rows.append(row)
    return rows, resources, target


@login_required
@require_http_methods(["GET", "POST"])
def request_new(request: HttpRequest) -> HttpResponse:
    user = permissions.signed_in(request.user)
    source = request.POST if request.method == "POST" else request.GET
    resource_ids = source.getlist("resource")[:50]
    details = RequestDetailsForm(request.POST if request.method == "POST" else None)
    errors: dict[Any, list[str]] = {}
    posted: dict[int, dict[str, Any]] = {}
    target = user

    if request.method == "POST":
        items = []
        for index, raw in enumerate(resource_ids):
            level_raw = request.POST.get(f"level-{index}", "")
            duration, valid = parse_duration(request.POST.get(f"duration-{index}"))
            posted[index] = {"level_id": int_or_none(level_raw)}
            if valid:
                posted[index]["duration"] = duration
            else:
                errors.setdefault(index, []).append("Choose a duration from the list.")
            items.append(request_service.RequestItem(raw, level_raw, duration))
        if not details.is_valid():
            errors.setdefault("", []).extend(
                str(m) for field_errors in details.errors.values() for m in field_errors
            )
        else:
            on_behalf = details.cleaned_data.get("user")
            if on_behalf is not None:
                target = on_behalf
        if not errors:
            try:
                created = request_service.submit_requests(
                    requested_by=user,
                    items=items,
                    reason=details.cleaned_data["reason"],
                    ticket=details.cleaned_data["ticket"],
                    user=target,
                )
            except request_service.RequestInvalid as exc:
                errors = exc.errors
            else:
                _say_sent(request, created, target)
                return HttpResponseRedirect(reverse("my-requests"))

    rows, resources, target = _form_rows(request, resource_ids, target, posted)
    for row in rows:
        row["errors"] = errors.get(row["index"], [])
        if row["resource"] is None and request.method == "GET":
            row["errors"] = [f"Resource {row['raw_id']} does not exist or cannot be requested."]
    context = {
        "rows": rows,
        "details": details,
        "general_errors": errors.get("", []),
        "on_behalf_choices": _on_behalf_choices(user, resources),
        "target": target,
    }
    return render_page(request, "access/request_form.html", context, status=400 if errors else 200)


def _say_sent(request: HttpRequest, created: list[AccessRequest], target: User) -> None:
    approved = sum(1 for r in created if r.status == RequestStatus.APPROVED)
    pending = len(created) - approved
    who = "" if target.pk == request.user.pk else f" for {target.email}"
    parts = []
    if pending:
        parts.append(f"{pending} request{'s' if pending != 1 else ''}{who} sent for approval")
    if approved:
        parts.append(f"{approved} approved automatically; the access is being granted")
    messages.success(request, "; ".join(parts) + ".")


# Following ------------------------------------------------------------------------------------
def _with_reviewers(requests: list[AccessRequest]) -> list[AccessRequest]:
    """Attaches the current stage's reviewers (one query for the whole list) and the
    duration in words."""
    pending = [r for r in requests if r.is_pending]
    prefetch_related_objects(pending, current_reviewers())
    for r in requests:
        r.duration_text = humanize(r.duration)  # type: ignore[attr-defined]
        r.reviewer_list = r.reviewers if r.is_pending else []  # type: ignore[attr-defined]
    return requests


@login_required
@require_GET
def my_requests(request: HttpRequest) -> HttpResponse:
    user = request.user
    before = int_or_none(request.GET.get("before"))
    queryset = (
        AccessRequest.objects.filter(Q(user=user) | Q(requested_by=user))
        .select_related("resource", "access_level", "user", "requested_by")
        .prefetch_related("approvals__reviewer")
        .order_by("-id")
    )
    if before is not None:
        queryset = queryset.filter(pk__lt=before)
    rows = list(queryset[: PAGE_SIZE + 1])
    shown = _with_reviewers(rows[:PAGE_SIZE])
    context = {
        "requests": shown,
        "older_before": shown[-1].pk if len(rows) > PAGE_SIZE else None,
        "paged": before is not None,
    }
    return render_page(request, "access/my_requests.html", context)


def visible_request(request: HttpRequest, pk: int) -> AccessRequest:
    access_request = get_object_or_404(
        AccessRequest.objects.select_related(
            "resource", "access_level", "user", "requested_by", "grant__access_level"
        ),
        pk=pk,
    )
    if not permissions.can_view_request(request.user, access_request):
        raise Http404("No such request.")
    return access_request


@login_required
@require_GET
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    access_request = visible_request(request, pk)
    _with_reviewers([access_request])
    stages = []
    for stage in access_request.stages:
        described = request_service.Stage(stage["order"], stage["reviewers"], stage["mode"])
        names_nobody = described.names_nobody(access_request.resource, access_request.user)
        stages.append(
            {
                "order": stage["order"],
                "text": described.describe(names_nobody=names_nobody),
                "current": access_request.is_pending
                and stage["order"] == access_request.current_stage,
            }
        )
    context = {
        "req": access_request,
        "stages": stages,
        "approvals": list(access_request.approvals.select_related("reviewer")),
        "grants": list(access_request.granted.select_related("access_level")),
        # An extension grants nothing new: it moves the expiry of the grant it names.
        "extended_grants": [access_request.grant] if access_request.grant else [],
        "duration": humanize(access_request.duration),
        "can_decide": request_service.can_decide(request.user, access_request),
        "can_cancel": access_request.is_pending
        and permissions.can_cancel_request(request.user, access_request),
        "form": DecisionForm(),
    }
    return render_page(request, "access/request_detail.html", context)


@login_required
@require_POST
def request_decide(request: HttpRequest, pk: int) -> HttpResponse:
    access_request = visible_request(request, pk)
    back = safe_next(request, reverse("request-detail", args=[access_request.pk]))
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve or deny; nothing was recorded.")
        return HttpResponseRedirect(back)
    approve = form.cleaned_data["decision"] == DecisionForm.APPROVE
    comment = form.cleaned_data["comment"].strip()
    needs_comment = request_service.denial_needs_comment(access_request)
    if (
        not approve
        and (request.POST.get("confirm") != "yes" or (needs_comment and not comment))
        and request_service.can_decide(request.user, access_request)
    ):
        # A denial ends the request at once: a page says so and asks again (with the
        # comment its rule requires); the decision is recorded from that page's button.
        context = {
            "req": access_request,
            "comment": comment,
            "needs_comment": needs_comment,
            "missing_comment": request.POST.get("confirm") == "yes" and needs_comment,
            "next": back,
        }
        return render_page(request, "access/deny_confirm.html", context)
    try:
        request_service.decide(
            access_request,
            reviewer=permissions.signed_in(request.user),
            approve=approve,
            comment=form.cleaned_data["comment"],
        )
    except request_service.DecisionError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(back)
    access_request.refresh_from_db()
    label = f"request #{access_request.pk} ({access_request.user.email} → {access_request.resource.name})"
    if not approve:
        messages.success(request, f"You denied {label}.")
    elif access_request.status == RequestStatus.APPROVED:
        messages.success(request, f"You approved {label}; the access is being granted.")
    else:
        messages.success(
            request,
            f"You approved {label}; it now waits for stage {access_request.current_stage}.",
        )
    return HttpResponseRedirect(back)


@login_required
@require_POST
def request_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    # cancel_request refuses (PermissionDenied, a 403) whoever may not cancel it.
    access_request = visible_request(request, pk)
    try:
        request_service.cancel_request(access_request, actor=permissions.signed_in(request.user))
    except request_service.DecisionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Request #{access_request.pk} is canceled.")
    return HttpResponseRedirect(
        safe_next(request, reverse("request-detail", args=[access_request.pk]))
    )


# The approvals queue ---------------------------------------------------------------------------
def _queue(queryset: Any) -> list[AccessRequest]:
    rows = list(
        queryset.select_related("resource", "access_level", "user", "requested_by").order_by(
            "created_at", "id"
        )[:QUEUE_SIZE]
    )
    return _with_reviewers(rows)


@login_required
@require_GET
def approvals(request: HttpRequest) -> HttpResponse:
    user = request.user
    mine = _queue(reviewing(user))
    others = None
    if permissions.is_admin(user):
        others = _queue(
            AccessRequest.objects.filter(status=RequestStatus.PENDING).exclude(
                pk__in=[r.pk for r in mine]
            )
        )
    context = {
        "mine": mine,
        "others": others,
        "queue_size": QUEUE_SIZE,
        "form": DecisionForm(),
        "approvals_count": len(mine) if len(mine) < QUEUE_SIZE else None,
    }
    if context["approvals_count"] is None:
        del context["approvals_count"]
    return render_page(request, "access/approvals.html", context)
