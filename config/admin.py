"""The admin site: reachable by the Admin role only, logging in through the portal login."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url

from access.permissions import can_use_admin_site


class PortcullisAdminSite(admin.AdminSite):
    site_header = "Portcullis administration"
    site_title = "Portcullis admin"
    index_title = "Administration"

    def has_permission(self, request: HttpRequest) -> bool:
        return can_use_admin_site(request.user)

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # One login for the whole portal: allauth's, with its rate limits and SSO.
        # Someone signed in without the Admin role would bounce between allauth (which
        # sends signed-in people on to "next") and here for ever: refuse instead.
        if request.user.is_authenticated and not self.has_permission(request):
            raise PermissionDenied("The admin site is for the Admin role.")
        next_url = request.GET.get("next") or resolve_url("admin:index")
        return HttpResponseRedirect(
            f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': next_url})}"
        )
