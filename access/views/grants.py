"""My access (current and recent grants), giving up or revoking a grant, and asking to
extend one. Changes go through access.services.grants and access.services.requests."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import F, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from access import permissions
from access.choices import GrantSource, RequestStatus
from access.forms import ExtensionForm, RevokeForm
from access.humanize import humanize
from access.models import Grant
from access.services import grants as grant_service
from access.services import requests as request_service
from access.views.common import render_page, safe_next

# Ended grants stay on My access this long, so a user sees what just expired or failed.
RECENT = timedelta(days=30)
CURRENT_SHOWN = 200
RECENT_SHOWN = 50


@login_required
@require_GET
def my_access(request: HttpRequest) -> HttpResponse:
    user = permissions.signed_in(request.user)
    mine = Grant.objects.filter(user=user).select_related("resource", "access_level", "assignment")
    current = list(
        mine.filter(status__in=grant_service.CURRENT_STATUSES).order_by(
            F("expires_at").asc(nulls_last=True), "id"
        )[:CURRENT_SHOWN]
    )
    recent = list(
        mine.exclude(status__in=grant_service.CURRENT_STATUSES)
        .filter(Q(revoked_at__gte=timezone.now() - RECENT) | Q(revoked_at__isnull=True))
        .order_by(F("revoked_at").desc(nulls_last=True), "-id")[:RECENT_SHOWN]
    )
    for grant in current:
        grant.may_give_up = grant.status in grant_service.ACTIVE_STATUSES and (  # type: ignore[attr-defined]
            permissions.can_revoke_grant(user, grant)
        )
        grant.may_extend = not grant.extension_refusal() and (  # type: ignore[attr-defined]
            permissions.can_extend_grant(user, grant)
        )
    for grant in current + recent:
        grant.error = grant.last_error or (  # type: ignore[attr-defined]
            grant.assignment.last_error if grant.assignment else ""
        )
    return render_page(request, "access/my_access.html", {"current": current, "recent": recent})


def visible_grant(request: HttpRequest, pk: int) -> Grant:
    """The grant, or 404 when it does not exist or the user may not see it."""
    return get_object_or_404(
        Grant.objects.visible_to(request.user).select_related("user", "resource", "access_level"),
        pk=pk,
    )


@login_required
@require_http_methods(["GET", "POST"])
def grant_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Giving up or revoking a grant: a page that says what happens, then the POST of its
    "confirm" button. A POST without it (the buttons of My access and the resource page)
    shows the page; nothing ends in one click."""
    grant = visible_grant(request, pk)
    user = permissions.signed_in(request.user)
    grant_service.check_may_revoke(user, grant)  # before the page offers anything
    back = safe_next(request, reverse("my-access"))
    form = RevokeForm(request.POST if request.method == "POST" else None)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    holder = grant.user_id == request.user.pk
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        context = {
            "grant": grant,
            "holder": holder,
            "reason": reason,
            "next": back,
            "observed": grant.source == GrantSource.OBSERVED,
        }
        return render_page(request, "access/grant_revoke.html", context)
    try:
        ended = grant_service.revoke_grant(grant, actor=user, reason=reason)
    except grant_service.GrantError:
        # The one refusal: no reason from someone other than the holder.
        messages.error(
            request,
            f"Say why you revoke {grant.user.email}'s access to {grant.resource.name}; "
            "nothing was changed.",
        )
        return HttpResponseRedirect(back)
    if not ended:
        messages.info(request, "This access had already ended.")
    elif holder:
        messages.success(
            request,
            f"You gave up {grant.resource.name} ({grant.access_level.name}); it is being removed.",
        )
    else:
        messages.success(
            request,
            f"{grant.user.email}'s access to {grant.resource.name} ({grant.access_level.name}) "
            "is revoked; it is being removed.",
        )
    return HttpResponseRedirect(back)


@login_required
@require_http_methods(["GET", "POST"])
def grant_extend(request: HttpRequest, pk: int) -> HttpResponse:
    grant = visible_grant(request, pk)
    if not permissions.can_extend_grant(request.user, grant):
        raise PermissionDenied("Only the holder, their manager, owners and admins extend access.")
    refusal = grant.extension_refusal()
    if refusal:
        messages.error(request, refusal)
        return HttpResponseRedirect(reverse("my-access"))
    rule = request_service.rule_for(grant.resource, grant.user)
    durations = request_service.extension_durations(grant, rule)
    problems: list[str] = []
    if rule.max_duration is not None and not durations:
        problems.append(
            f"Access to {grant.resource.name} already lasts about as long as its rule "
            f"allows ({humanize(rule.max_duration)} from now): it cannot be extended now."
        )
    form = ExtensionForm(request.POST or None, durations=durations)
    if request.method == "GET":
        default = rule.default_duration
        if default in durations:
            form.initial["duration"] = int(default.total_seconds())
    if request.method == "POST" and form.is_valid():
        try:
            extension = request_service.request_extension(
                grant,
                requested_by=permissions.signed_in(request.user),
                duration=form.chosen_duration(),
                reason=form.cleaned_data["reason"],
                ticket=form.cleaned_data["ticket"],
            )
        except request_service.RequestInvalid as exc:
            problems = exc.messages
        else:
            if extension.status == RequestStatus.APPROVED:
                messages.success(request, "Extension approved; the new expiry applies now.")
            else:
                messages.success(request, "Extension requested; the approvers have been asked.")
            return HttpResponseRedirect(reverse("request-detail", args=[extension.pk]))
    context = {
        "can_choose": bool(durations),
        "grant": grant,
        "form": form,
        "problems": problems,
        "rule_lines": rule.describe(grant.resource, grant.user),
    }
    status = 400 if request.method == "POST" else 200
    return render_page(request, "access/grant_extend.html", context, status=status)
