"""Personal API tokens: ``Authorization: Bearer pcl_...``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from access import tokens
from access.api.throttling import FailedTokenThrottle
from access.models import API_TOKEN_PREFIX, ApiToken
from audit import context

# last_used_at is for people deciding which tokens to revoke: minute precision
# is plenty, and it spares a database write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_KEYWORDS = ("bearer", "token")


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates a request by a personal API token, looked up by its SHA-256 digest.

    Unknown, expired and revoked tokens, and tokens of deactivated users, get 401.
    Events recorded during the request name the token's prefix, so the audit log
    tells what was done through the API from what was done in the browser.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        parts = header.split()
        if not parts or parts[0].lower() not in _KEYWORDS:
            # Not ours: let the next authentication class (the session) try.
            return None
        try:
            user, token = self._authenticate(parts)
        except exceptions.AuthenticationFailed:
            # Only bad tokens are counted and refused: a valid token is never held back by
            # others' bad ones from the same address (an office behind one NAT, or every
            # client when the proxies are not counted), and tokens are too long to guess.
            guard = FailedTokenThrottle(request)
            guard.refuse_if_over()
            guard.failed()
            raise
        if token.read_only and request.method not in permissions.SAFE_METHODS:
            # 403, not 401: the token is good, the scope is what refuses (and it is not
            # counted as a bad token).
            raise exceptions.PermissionDenied(tokens.READ_ONLY_REFUSAL)
        return user, token

    def _authenticate(self, parts: list[str]) -> tuple[Any, ApiToken]:
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "The Authorization header must be 'Bearer <token>', with the token and no spaces."
            )
        raw = parts[1]
        if not raw.startswith(API_TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed(
                f"This is not a Portcullis API token (they start with {API_TOKEN_PREFIX!r})."
            )
        token = (
            ApiToken.objects.select_related("user").filter(digest=ApiToken.hash_token(raw)).first()
        )
        if token is None or not token.is_usable:
            raise exceptions.AuthenticationFailed("The API token is unknown, expired or revoked.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is deactivated.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        ctx = context.current()
        # The request middleware resets the context when the request ends.
        context.activate(
            context.RequestContext(
                request_id=ctx.request_id, ip_address=ctx.ip_address, via_api_token=token.prefix
            )
        )
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Its presence turns refusals into 401 (with this challenge) instead of 403.
        return 'Bearer realm="api"'


class ApiTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the token in the OpenAPI schema (drf-spectacular finds it by target_class)."""

    target_class = ApiTokenAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer"
        )
        scheme["description"] = (
            "A personal API token (pcl_...), created under Settings → API tokens."
        )
        return scheme
