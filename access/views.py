from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from access.models import Grant


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    grants = (
        Grant.objects.for_user(request.user)
        .current()
        .select_related("resource", "access_level")
        .order_by("expires_at", "id")[:50]
    )
    return render(request, "access/home.html", {"grants": grants})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
