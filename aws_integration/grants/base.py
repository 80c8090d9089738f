"""What every AWS grant driver shares: sessions in the app's accounts (cached until shortly
before their credentials expire) and the translation of AWS errors into DriverError."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from access.drivers import DriverError
from aws_integration import clients
from aws_integration.aws_settings import get_aws_settings
from aws_integration.clients import error_code
from aws_integration.models import AwsApp

if TYPE_CHECKING:
    import boto3

    from access.models import Assignment

SESSION_NAME = "portcullis-grants"
# Assumed-role credentials last an hour; reuse them for 45 minutes.
_SESSION_TTL = 45 * 60
_sessions: dict[tuple[str, str, str], tuple[float, boto3.Session]] = {}
_lock = threading.Lock()

# Errors that say the caller is not allowed: retrying alone will not fix them.
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
    }
)


def app_of(assignment: Assignment) -> AwsApp:
    app = AwsApp.objects.filter(pk=assignment.resource.app_id).first()
    if app is None:
        raise DriverError(
            f"The resource {assignment.resource.name} belongs to no connected AWS organization.",
            retryable=False,
        )
    return app


def session_for(app: AwsApp, account_id: str) -> boto3.Session:
    """A session in ``account_id`` through the app's ingester role (with the External ID)."""
    external_id = get_aws_settings().external_id
    key = (account_id, app.ingester_role_name, external_id)
    now = time.monotonic()
    with _lock:
        cached = _sessions.get(key)
        if cached and cached[0] > now:
            return cached[1]
    credentials = clients.assume_role(
        f"arn:aws:iam::{account_id}:role/{app.ingester_role_name}",
        external_id=external_id,
        session_name=SESSION_NAME,
    )
    session = clients.make_session(credentials)
    with _lock:
        replaced = _sessions.get(key)
        _sessions[key] = (now + _SESSION_TTL, session)
    if replaced is not None:
        # The old session's clients go with it (they would otherwise pile up, one set per
        # 45 minutes).
        with _client_lock:
            for client_key in [k for k in _clients if k[0] == id(replaced[1])]:
                del _clients[client_key]
    return session


# boto3 sessions are not thread-safe while making clients, but clients are: each client is
# made once per session (under a lock) and shared by the grant engine's threads. Making a
# client costs milliseconds; a grant needs one or two.
_client_lock = threading.Lock()
_clients: dict[tuple[int, str, str | None, str, int], Any] = {}


def client_for(app: AwsApp, account_id: str, service: str, region: str | None = None) -> Any:
    from django.conf import settings

    session = session_for(app, account_id)
    key = (id(session), service, region, settings.AWS_ENDPOINT_URL, settings.AWS_MAX_ATTEMPTS)
    with _client_lock:
        made = _clients.get(key)
        if made is None or made[0] is not session:
            made = _clients[key] = (
                session,
                clients.client(service, session=session, region=region),
            )
        return made[1]


def forget_sessions() -> None:
    """Drop cached sessions and clients (tests reset the stand-in between cases)."""
    with _lock:
        _sessions.clear()
    with _client_lock:
        _clients.clear()


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turns a failed AWS call into a DriverError that names what was being done.

    botocore has already retried throttling and 5xx (adaptive mode) by the time an error
    reaches here; the grant machinery retries again later with backoff."""
    try:
        yield
    except DriverError:
        raise
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code in ACCESS_DENIED_CODES:
            raise DriverError(
                f"{what}: AWS refused ({code}: {message}). Check the ingester role's "
                "permissions policy in the AWS app's setup page.",
                retryable=False,
            ) from exc
        raise DriverError(f"{what}: {code or 'error'}: {message}") from exc
    except BotoCoreError as exc:
        raise DriverError(f"{what}: {exc}") from exc
