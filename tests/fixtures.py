"""Shared fixtures: personas, the stand-in AWS (moto server over HTTP), the test
identity provider (oidc-provider-mock over HTTP) and the browser (Debian's Chromium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest
import requests

if TYPE_CHECKING:
    from access.models import App, Resource, User

# Loaded as a pytest plugin (-p tests.fixtures in pyproject.toml) so that the
# fixtures reach every app's tests; Django is not set up yet at import time,
# hence the imports inside the functions.

PASSWORD = "correct-horse-battery-staple"

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


# Audit triggers and Django's flush ------------------------------------------
@pytest.fixture(autouse=True)
def _audit_triggers_around_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """On SQLite, Django empties tables between transactional tests with DELETE, which
    the append-only triggers refuse; lift them just for that flush and put them back."""
    from django.db import connection

    from audit import triggers

    transactional = any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    ) or any(m.kwargs.get("transaction") for m in request.node.iter_markers("django_db"))
    if not transactional or connection.vendor != "sqlite":
        yield
        return
    request.getfixturevalue("transactional_db")
    triggers.install(connection)
    yield
    triggers.drop(connection)


@pytest.fixture(autouse=True, scope="session")
def _audit_truncate_trigger_around_flush() -> Iterator[None]:
    """On PostgreSQL, Django empties tables between transactional tests with TRUNCATE,
    which the audit log's TRUNCATE trigger refuses. Test flushes alone lift it, inside
    the flush's own transaction, so the trigger is back before anything else runs."""
    from django.db import transaction
    from django.db.backends.postgresql.operations import DatabaseOperations

    from audit import triggers

    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: DatabaseOperations, sql_list: list[str]) -> None:
        if not any(triggers.TABLE in sql for sql in sql_list):
            original(self, sql_list)
            return
        with transaction.atomic(using=self.connection.alias):
            triggers.drop_truncate(self.connection)
            original(self, sql_list)
            triggers.install_truncate(self.connection)

    with mock.patch.object(DatabaseOperations, "execute_sql_flush", execute_sql_flush):
        yield


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Every test starts with no requests counted against the API's and allauth's rate
    limits (kept in the cache), so tests do not use up each other's allowance; the limits
    themselves stay on, at their configured rates (access/tests/test_throttling.py)."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Full-strength hashing costs ~0.5 s a user; tests that need the real
    # hasher (none so far) can set PASSWORD_HASHERS themselves.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Personas ---------------------------------------------------------------------
@dataclass
class Personas:
    admin: User
    requester: User
    approver: User
    manager: User
    auditor: User
    outsider: User
    app: App
    resource: Resource


def make_user(
    email: str,
    *,
    roles: tuple[str, ...] = (),
    manager: User | None = None,
    email_verified: bool = False,
    **extra: Any,
) -> User:
    """A portal user with PASSWORD (access.tests.factories.UserFactory). ``email_verified``:
    their address is verified (allauth), as after opening the confirmation link or signing
    in through single sign-on."""
    from access.tests.factories import UserFactory

    # factory_boy types a factory's call as the factory, not the model it makes.
    return UserFactory(  # type: ignore[return-value]
        email=email, roles=roles, manager=manager, email_verified=email_verified, **extra
    )


@pytest.fixture
def personas(db: Any) -> Personas:
    return create_personas()


def create_personas() -> Personas:
    """The personas and the resource the approver owns; for data shared by a module's tests
    (see tests/test_authz_matrix.py), the ``personas`` fixture for one test's own."""
    from access.permissions import ADMIN_ROLE, AUDITOR_ROLE
    from access.tests.factories import OwnerFactory, ResourceFactory

    manager = make_user("mia.manager@example.com", first_name="Mia", last_name="Manager")
    resource = ResourceFactory(
        app__name="Example organization", account_id="111111111111", name="prod"
    )
    approver = make_user("olga.owner@example.com", first_name="Olga", last_name="Owner")
    OwnerFactory(resource=resource, user=approver)
    return Personas(
        admin=make_user("ada.admin@example.com", roles=(ADMIN_ROLE,), first_name="Ada"),
        requester=make_user("rob.requester@example.com", manager=manager, first_name="Rob"),
        approver=approver,
        manager=manager,
        auditor=make_user("aud.auditor@example.com", roles=(AUDITOR_ROLE,), first_name="Aud"),
        outsider=make_user("otto.outsider@example.com", first_name="Otto"),
        app=resource.app,  # type: ignore[arg-type]  # a Resource, as for make_user
        resource=resource,  # type: ignore[arg-type]
    )


def shared_samples(kind: str) -> Path:
    """The real-world samples kept beside the repository (shared/samples/<kind>): next to
    this checkout first (as CI lays it out), else the workplace copy."""
    here = Path(__file__).resolve().parents[1]
    for base in (here.parent / "shared", Path("/work/shared")):
        if (base / "samples" / kind).is_dir():
            return base / "samples" / kind
    return here.parent / "shared" / "samples" / kind


# Stand-in AWS -----------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    from demo.standin import add_permission_set_tagging, use_base_amis_only

    use_base_amis_only()
    add_permission_set_tagging()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_server: str, settings) -> Iterator[str]:
    """The stand-in AWS, emptied before each test; boto3 clients made by
    aws_integration.clients reach it over HTTP."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    settings.AWS_ENDPOINT_URL = moto_server
    settings.AWS_MAX_ATTEMPTS = 2
    yield moto_server


# Test identity provider ---------------------------------------------------------
@pytest.fixture(scope="session")
def idp_server() -> Iterator[str]:
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(port=0) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def idp(idp_server: str) -> str:
    return idp_server


def set_idp_user(idp_url: str, sub: str, claims: dict) -> None:
    requests.put(f"{idp_url}/users/{sub}", json=claims, timeout=10).raise_for_status()


# Browser ----------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        message = f"{CHROMIUM} is missing: `make test` installs Debian's chromium."
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # While the browser is open, Playwright's sync API keeps its event loop marked
    # as running in this thread, and Django refuses database calls from such a
    # thread; the database fixtures of every test meanwhile need this.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as pw:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


CSP_MARK = "Content Security Policy"


@pytest.fixture
def page(browser, live_server, monkeypatch) -> Iterator[object]:
    """A browser tab on the live server. Every browser test also checks that nothing the
    page did was refused by the Content-Security-Policy (Chromium says so in the console);
    ``page.csp_violations`` lists what was, for a test that looks itself."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if CSP_MARK in m.text else None)
    page.csp_violations = violations
    yield page
    context.close()
    assert not violations, "The Content-Security-Policy refused:\n" + "\n".join(violations)


# Refusals, throttling and 5xx from the stand-in AWS: tests/aws_faults.py.
from tests.aws_faults import aws_faults, aws_faults_kept, aws_faults_proxy  # noqa: E402, F401
