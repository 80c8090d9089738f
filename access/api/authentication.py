"""Personal API tokens: ``Authorization: Bearer pcl_...``."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from access.models import API_TOKEN_PREFIX, ApiToken
from audit import context


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() not in ("bearer", "token"):
            return None
        raw = parts[1]
        if not raw.startswith(API_TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed("This is not a Portcullis API token.")
        token = (
            ApiToken.objects.select_related("user").filter(digest=ApiToken.hash_token(raw)).first()
        )
        if token is None or not token.is_usable:
            raise exceptions.AuthenticationFailed("The API token is unknown, expired or revoked.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is deactivated.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        ctx = context.current()
        context.activate(
            context.RequestContext(
                request_id=ctx.request_id, ip_address=ctx.ip_address, via_api_token=token.prefix
            )
        )
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
