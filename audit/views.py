from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.module_loading import import_string

from audit.models import AuditEvent


def can_read_audit_log(user) -> bool:
    return import_string(settings.AUDIT_READ_RULE)(user)


@login_required
def event_list(request: HttpRequest) -> HttpResponse:
    if not can_read_audit_log(request.user):
        raise PermissionDenied
    events = AuditEvent.objects.order_by("-id")[:100]
    return render(request, "audit/event_list.html", {"events": events})
