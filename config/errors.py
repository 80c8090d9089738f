"""The portal's refusal page: the reason a PermissionDenied gives, when the portal wrote it."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseNotAllowed
from django.template import loader

API_PREFIX = "/api/"

# The packages whose PermissionDenied messages are written for the person refused. A
# message raised anywhere else (Django, a library) may name internals: never shown.
OWN_PACKAGES = frozenset({"access", "audit", "aws_integration", "config", "demo", "reviews"})


def refusal_reason(exception: BaseException | None) -> str:
    """The exception's message when our own code raised it as a plain PermissionDenied."""
    if type(exception) is not PermissionDenied or not exception.args:
        return ""
    traceback = exception.__traceback__
    if traceback is None:
        return ""
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = str(traceback.tb_frame.f_globals.get("__name__", ""))
    if module.partition(".")[0] not in OWN_PACKAGES:
        return ""
    return str(exception)


def permission_denied(request: HttpRequest, exception: BaseException | None = None) -> HttpResponse:
    """Django's 403 view, with the reason given to the template as ``reason``."""
    template = loader.get_template("403.html")
    return HttpResponseForbidden(
        template.render(request=request, context={"reason": refusal_reason(exception)})
    )


def method_not_allowed_page(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[..., HttpResponse]:
    """Middleware: a page (not the API, whose 405 already says which methods) answered 405
    with no body, as Django's ``require_POST`` does when an address that takes a form's POST
    is opened, gets the portal's page saying so, instead of the browser's blank error."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if (
            response.status_code != 405
            or response.content
            or request.path.startswith(API_PREFIX)
            or request.method == "HEAD"
        ):
            return response
        page = HttpResponseNotAllowed(
            [m.strip() for m in response.get("Allow", "").split(",") if m.strip()],
            content=loader.get_template("405.html").render(request=request),
        )
        return page

    return middleware
