"""What the workflow pages share: rendering with the navigation's counts, durations in
forms, safe "back to" links, and the reviewer's queue of pending requests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from access.humanize import humanize
from access.models import AccessRequest
from config.parsing import positive_int

UNTIL_REVOKED = "until"


def reviewing(user: Any) -> Any:
    """Pending requests awaiting this user's decision (the same queue the API serves)."""
    return AccessRequest.objects.awaiting_decision_by(user)


def approvals_count(user: Any) -> int:
    if not getattr(user, "is_authenticated", False):
        return 0
    return reviewing(user).count()


def render_page(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    context.setdefault("approvals_count", approvals_count(request.user))
    return render(request, template, context, status=status)


def duration_value(value: timedelta | None) -> str:
    """A duration as a form value: whole seconds, or "until" for until revoked."""
    return UNTIL_REVOKED if value is None else str(int(value.total_seconds()))


def parse_duration(raw: str | None) -> tuple[timedelta | None, bool]:
    """A form value back into a duration: (duration, valid)."""
    raw = (raw or "").strip()
    if raw == UNTIL_REVOKED:
        return None, True
    seconds = positive_int(raw, below=10**9)
    return (timedelta(seconds=seconds), True) if seconds is not None else (None, False)


def duration_options(
    choices: list[timedelta | None], selected: timedelta | None
) -> list[dict[str, Any]]:
    return [
        {
            "value": duration_value(choice),
            "label": "Until revoked" if choice is None else humanize(choice),
            "selected": choice == selected,
        }
        for choice in choices
    ]


def safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def int_or_none(raw: Any) -> int | None:
    """An id from a form or query string, or None."""
    return positive_int(raw)
