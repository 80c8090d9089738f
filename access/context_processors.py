from typing import Any

from django.conf import settings
from django.http import HttpRequest

from access import permissions


def roles(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "is_portcullis_admin": permissions.is_admin(user),
        "can_view_audit_log": permissions.can_view_audit_log(user),
        "open_signup": settings.OPEN_SIGNUP,
    }
