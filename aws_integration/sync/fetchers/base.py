"""Shared helpers for fetchers: error capture per scope, service concurrency limits."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from aws_integration.sync.fetch_results import Scope, ScopeError, ScopeResult

logger = logging.getLogger("aws_integration.sync")

# Concurrent calls per service across all accounts of one sync. Identity Center's APIs
# have low per-account rate limits and all their calls go to the management account.
SERVICE_LIMITS: dict[str, int] = {"organizations": 2, "sso-admin": 4, "identitystore": 4}
DEFAULT_SERVICE_LIMIT = 8


class ServiceLimiter:
    """Bounds how many listings of one service run at once (a semaphore per service)."""

    def __init__(self, default: int = DEFAULT_SERVICE_LIMIT) -> None:
        self._default = default
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}

    @contextmanager
    def __call__(self, service: str) -> Iterator[None]:
        with self._lock:
            semaphore = self._semaphores.get(service)
            if semaphore is None:
                limit = min(SERVICE_LIMITS.get(service, self._default), self._default)
                semaphore = self._semaphores[service] = threading.BoundedSemaphore(limit)
        with semaphore:
            yield


def error_of(exc: BaseException) -> ScopeError:
    """The code and message a SyncIssue keeps for a failed call."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or str(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "ClientError")
        )
        return ScopeError(code=code, message=str(exc))
    if isinstance(exc, BotoCoreError):
        return ScopeError(code=type(exc).__name__, message=str(exc))
    return ScopeError(code=type(exc).__name__, message=f"Unexpected error while syncing: {exc}")


def guarded(scope: Scope, fetch: Callable[[], ScopeResult]) -> ScopeResult:
    """Runs one scope's listing; any failure becomes the scope's error, so the scope's rows
    are left untouched rather than swept on a partial listing."""
    try:
        return fetch()
    except (ClientError, BotoCoreError) as exc:
        logger.warning("Sync of %s failed: %s", scope, exc)
        return ScopeResult(scope=scope, error=error_of(exc))
    except Exception as exc:
        logger.exception("Sync of %s failed unexpectedly", scope)
        return ScopeResult(scope=scope, error=error_of(exc))


# The metadata key sync sets, with the reason, on what the provider will not grant (an
# untagged IAM role or permission set); Resource and AccessLevel.not_requestable_reason read it.
NOT_REQUESTABLE = "not_requestable"


def tag_dict(tags: list[dict[str, str]] | dict[str, str] | None) -> dict[str, str]:
    """AWS tag lists ([{"Key":..,"Value":..}]) or maps (EKS) as one dict."""
    if not tags:
        return {}
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {t["Key"]: t.get("Value", "") for t in tags}


def iso(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def json_safe(value: Any) -> Any:
    """A value as the JSON columns give it back, so comparing with stored rows is exact."""
    return json.loads(json.dumps(value, default=str))


def identifier_from_arn(value: str) -> str:
    """The name at the end of an ARN (role, cluster, DB), or the value itself."""
    if not value.startswith("arn:"):
        return value
    resource = value.split(":", 5)[-1]
    return resource.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def paginate(paginator: Any, key: str, **kwargs: Any) -> list[Any]:
    """Every item of a paginated listing: ``paginate(client.get_paginator("op"), "Items")``."""
    items: list[Any] = []
    for page in paginator.paginate(**kwargs):
        items.extend(page.get(key, []))
    return items
