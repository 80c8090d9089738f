"""DRF permission classes. Each one asks access.permissions, where every rule lives."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from access import permissions


class CanUseApi(BasePermission):
    """Any active, authenticated user. Anonymous callers get 401 (the authenticators
    give DRF a challenge to send), not 403."""

    message = "Your account cannot use the API."

    def has_permission(self, request: Request, view: Any) -> bool:
        return permissions.can_use_api(request.user)


class CanViewResource(CanUseApi):
    """Seeing a resource is the view's queryset, ``Resource.objects.visible_to(user)``: a
    resource it finds is visible, any other is not found (404). Asking again per object
    would only repeat the same query."""


class CanRevokeApiToken(CanUseApi):
    message = "You can revoke only your own API tokens."

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return permissions.can_revoke_api_token(request.user, obj)


class CanActOnGrant(CanUseApi):
    """Reading a grant, revoking it, asking to extend it: each asks its own rule. Grants the
    caller may not see at all are not found (the view's queryset), not refused."""

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if view.action == "revoke":
            self.message = "You can revoke only your own access, or access to resources you own."
            return permissions.can_revoke_grant(request.user, obj)
        if view.action == "extend":
            self.message = (
                "You can extend only your own access, or access you may request for its holder."
            )
            return permissions.can_extend_grant(request.user, obj)
        # Reading: the view's queryset is ``Grant.objects.visible_to(user)``, so a grant it
        # found is one the caller may see.
        return True
