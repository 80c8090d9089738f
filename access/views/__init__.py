"""The portal's pages. The home page, the health check and API tokens live here; the
catalogue, requests, grants and request rules in their own modules."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django.views.defaults import page_not_found

from access import permissions, tokens
from access.api.throttling import TokenCreateThrottle, throttled_page
from access.forms import ApiTokenForm
from access.models import ApiToken, Grant
from access.views.common import render_page

HOME_GRANT_LIMIT = 50


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    grants = (
        Grant.objects.for_user(permissions.signed_in(request.user))
        .current()
        .select_related("resource", "access_level")
        # Soonest expiry first and "until revoked" last, on SQLite and PostgreSQL alike.
        .order_by(F("expires_at").asc(nulls_last=True), "id")[:HOME_GRANT_LIMIT]
    )
    return render_page(request, "access/home.html", {"grants": grants})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for a path no URL matches: JSON under /api/, as the API's own 404s and its schema
    say, so a client never has to read an HTML page; the usual page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "No API endpoint has this path."}, status=404)
    return page_not_found(request, exception)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def _render_token_list(request: HttpRequest, form: ApiTokenForm, status: int = 200) -> HttpResponse:
    api_tokens = list(
        ApiToken.objects.filter(user=permissions.signed_in(request.user)).order_by(
            "-created_at", "-id"
        )
    )
    for token in api_tokens:
        token.status = tokens.token_status(token)  # type: ignore[attr-defined]
    return render(
        request, "access/tokens.html", {"tokens": api_tokens, "form": form}, status=status
    )


@login_required
@require_GET
def token_list(request: HttpRequest) -> HttpResponse:
    return _render_token_list(request, ApiTokenForm())


@login_required
@require_POST
@never_cache
def token_create(request: HttpRequest) -> HttpResponse:
    # The API's limit on creating tokens, counted together with it.
    refused = throttled_page(request, TokenCreateThrottle(), "created API tokens")
    if refused is not None:
        return refused
    form = ApiTokenForm(request.POST)
    if form.is_valid():
        try:
            token, raw = tokens.create_api_token(
                permissions.signed_in(request.user),
                form.cleaned_data["name"],
                expires_at=form.expires_at(),
                read_only=form.cleaned_data["read_only"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            # The secret is rendered in this response only and stored nowhere, so it
            # cannot be shown again; never_cache keeps it out of browser caches.
            return render(request, "access/tokens_created.html", {"token": token, "raw": raw})
    return _render_token_list(request, form, status=400)


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    already = token.revoked_at is not None
    tokens.revoke_api_token(token, actor=permissions.signed_in(request.user))
    if already:
        messages.info(request, f"The token “{token.name}” was already revoked.")
    else:
        messages.success(request, f"The token “{token.name}” is revoked; it no longer works.")
    return HttpResponseRedirect(reverse("api-token-list"))
