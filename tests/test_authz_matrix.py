"""The authorization matrix: every URL of the URL conf (pages, the API router, every admin
URL) asked by every persona with each method, compared with tests/authz_matrix.py.

The URLs come from the resolver, so a URL added anywhere without a row in the table fails
here, named. The objects the URLs take (a resource, the requester's grant, request and API
token, an audit event, a row of every model in the admin) are made once for the module;
each request runs in its own savepoint, so what one request changes the next does not see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.db import transaction
from django.shortcuts import resolve_url
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from rest_framework.views import APIView

from tests import authz_matrix
from tests.fixtures import create_personas

ADMIN_PREFIX = "admin/"


# The URLs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """One URL pattern: ``key`` is its name (with namespace), or its route when unnamed."""

    key: str
    route: str
    callback: Callable[..., Any] = field(compare=False)

    @property
    def view_class(self) -> type | None:
        return getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)

    @property
    def is_api(self) -> bool:
        """DRF endpoints are asked with an API token; pages (the API docs page included,
        which sends anonymous visitors to the login page) with a session."""
        cls = self.view_class
        return bool(cls and issubclass(cls, APIView) and not issubclass(cls, LoginRequiredMixin))

    @property
    def methods(self) -> tuple[str, ...]:
        """GET and POST for every URL; PUT, PATCH and DELETE for API endpoints taking them."""
        extra: list[str] = []
        if self.is_api:
            actions = getattr(self.callback, "actions", None)
            for method in ("put", "patch", "delete"):
                takes = (
                    method in actions if actions is not None else hasattr(self.view_class, method)
                )
                if takes:
                    extra.append(method.upper())
        return ("GET", "POST", *extra)


def _join(prefix: str, route: str) -> str:
    # As Django joins routes in ResolverMatch.route: the inner ^ goes.
    return prefix + route.removeprefix("^") if prefix else route


def walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[Endpoint]:
    for pattern in patterns:
        route = _join(prefix, str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from walk(pattern.url_patterns, route, inner)
        elif isinstance(pattern, URLPattern):
            name = pattern.name and (f"{namespace}:{pattern.name}" if namespace else pattern.name)
            yield Endpoint(key=name or route, route=route, callback=pattern.callback)


def endpoints() -> list[Endpoint]:
    walked = list(walk(get_resolver().url_patterns))
    keys = [e.key for e in walked]
    duplicates = {k for k in keys if keys.count(k) > 1}
    unexplained = duplicates - set(authz_matrix.SHADOWED)
    assert not unexplained, f"URL names used twice, the table cannot tell them apart: {unexplained}"
    stale = set(authz_matrix.SHADOWED) - duplicates
    assert not stale, f"SHADOWED names no longer served twice, remove them: {stale}"
    found: list[Endpoint] = []
    for endpoint in walked:
        # The first pattern of a name is the one that answers; the later ones are shadowed.
        if endpoint.key not in {e.key for e in found}:
            found.append(endpoint)
    return [e for e in found if e.key not in authz_matrix.EXCLUDED]


_CONVERTER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")


def build_path(route: str, kwargs: dict[str, Any]) -> str:
    """The path of ``route`` with ``kwargs`` in its parameters; route syntax and regexes
    (``(?P<name>...)``, parentheses nested) alike."""
    out, i = [], 0
    while i < len(route):
        if route.startswith("(?P<", i):
            name = route[i + 4 : route.index(">", i)]
            depth, j = 0, i
            while True:
                depth += {"(": 1, ")": -1}.get(route[j], 0)
                if route[j] == "\\":
                    j += 1
                elif depth == 0:
                    break
                j += 1
            out.append(str(kwargs[name]))
            i = j + 1
        elif route[i] in "^$":
            i += 1
        else:
            out.append(route[i])
            i += 1
    return "/" + _CONVERTER.sub(lambda m: str(kwargs[m["name"]]), "".join(out))


def _params(route: str) -> list[str]:
    return re.findall(r"\(\?P<(\w+)>", route) + [m["name"] for m in _CONVERTER.finditer(route)]


# The objects the URLs take ------------------------------------------------------------------
@dataclass
class World:
    clients: dict[str, dict[str, str]]  # persona -> "session" / "token" -> value
    kwargs: dict[str, dict[str, Any]]  # endpoint key -> URL parameters
    admin_objects: dict[str, Any]  # "app_label/model_name" -> pk
    bodies: dict[str, dict[str, Any]]  # endpoint key -> what its POST carries


def _make_objects(personas: Any) -> dict[str, Any]:
    """A row the URLs can name; every object belongs to someone else than most personas,
    so that "not yours" (404) and "not allowed" (403) both show."""
    from allauth.account.models import EmailAddress
    from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
    from django_q.models import OrmQ, Schedule, Task

    from access.choices import GrantSource, GrantStatus
    from access.models import AccessLevel, Assignment, Grant, RequestRule, UserGroup
    from access.services import requests as request_service
    from access.tokens import create_api_token
    from audit.models import AuditEvent
    from aws_integration import services as aws_services
    from aws_integration.models import (
        AwsApp,
        BadEventMessage,
        SyncIssue,
        SyncRun,
        Validation,
    )

    resource = personas.resource
    level = AccessLevel.objects.create(resource=resource, remote_id="ps-1", name="ReadOnly")
    rule = RequestRule.objects.create(resource=resource, name="Owners approve")
    stage = rule.stages.create(order=1, reviewers="owners", mode="any")
    # What the POSTs ask for: not what the requester already holds or asked for.
    other_level = AccessLevel.objects.create(resource=resource, remote_id="ps-2", name="Admin")
    access_request = request_service.submit_requests(
        requested_by=personas.requester,
        items=[request_service.RequestItem(resource.pk, level.pk, timedelta(hours=8))],
        reason="matrix",
    )[0]
    grant = Grant.objects.create(
        user=personas.requester,
        resource=resource,
        access_level=level,
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
        expires_at=timezone.now() + timedelta(hours=4),
    )
    Assignment.objects.create(user=personas.requester, resource=resource, access_level=level)
    token, _ = create_api_token(personas.requester, "the requester's laptop")
    group = UserGroup.objects.create(name="Ops")
    group.members.add(personas.requester)
    aws_app = AwsApp.objects.create(name="Example AWS", management_account_id="222222222222")
    aws_services.get_aws_settings()
    run = SyncRun.objects.create(app=aws_app)
    issue = SyncIssue.objects.create(
        app=aws_app, scope="events", code="x", message="x", last_run=run
    )
    BadEventMessage.objects.create(
        app=aws_app, issue=issue, run=run, code="x", message_id="m", body="{}", error="x"
    )
    Validation.objects.create(
        app=aws_app, key="k", name="k", why="k", status="failed", severity="high"
    )
    EmailAddress.objects.create(user=personas.requester, email=personas.requester.email)
    social_app = SocialApp.objects.create(
        provider="openid_connect", provider_id="other", name="Other", client_id="c"
    )
    account = SocialAccount.objects.create(user=personas.requester, provider="other", uid="s")
    SocialToken.objects.create(app=social_app, account=account, token="t")
    if not Schedule.objects.exists():
        Schedule.objects.create(func="access.tasks.run_grant_engine", schedule_type="I")
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(
            id=f"task-{success}",
            name=f"task-{success}",
            func="access.tasks.run_grant_engine",
            started=now,
            stopped=now,
            success=success,
        )
    OrmQ.objects.create(key="portcullis", payload="x")
    return {
        "resource": resource,
        "level": other_level,
        "rule": rule,
        "stage": stage,
        "request": access_request,
        "grant": grant,
        "token": token,
        "event": AuditEvent.objects.order_by("pk").first(),
    }


def _url_kwargs(objects: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from django.contrib.contenttypes.models import ContentType

    resource, request, grant = objects["resource"], objects["request"], objects["grant"]
    return {
        "resource-detail": {"pk": resource.pk},
        "resource-rules": {"pk": resource.pk},
        "resource-rule-new": {"pk": resource.pk},
        "resource-rule-edit": {"pk": resource.pk, "rule_pk": objects["rule"].pk},
        "resource-rule-delete": {"pk": resource.pk, "rule_pk": objects["rule"].pk},
        "request-detail": {"pk": request.pk},
        "request-decide": {"pk": request.pk},
        "request-cancel": {"pk": request.pk},
        "grant-revoke": {"pk": grant.pk},
        "grant-extend": {"pk": grant.pk},
        "api-token-revoke": {"pk": objects["token"].pk},
        "audit:event-detail": {"pk": objects["event"].pk},
        "access-api:resource-detail": {"pk": resource.pk},
        "access-api:grant-detail": {"pk": grant.pk},
        "access-api:grant-extend": {"pk": grant.pk},
        "access-api:grant-revoke": {"pk": grant.pk},
        "access-api:access-request-detail": {"pk": request.pk},
        "access-api:access-request-approve": {"pk": request.pk},
        "access-api:access-request-deny": {"pk": request.pk},
        "access-api:access-request-cancel": {"pk": request.pk},
        "access-api:api-token-revoke": {"pk": objects["token"].pk},
        "audit-api:audit-event-detail": {"pk": objects["event"].pk},
        # Links that arrive by email, with keys that were never issued.
        "account_confirm_email": {"key": "MQ:not-a-key"},
        "account_reset_password_from_key": {"uidb36": "1", "key": "not-a-key"},
        # No single sign-on provider is configured in the tests.
        "openid_connect_login": {"provider_id": "sso"},
        "openid_connect_callback": {"provider_id": "sso"},
        "admin:view_on_site": {
            "content_type_id": ContentType.objects.get_for_model(resource).pk,
            "object_id": resource.pk,
        },
        "admin:app_list": {"app_label": "access"},
        "admin:auth_user_password_change": {"id": objects["request"].user_id},
        f"{ADMIN_PREFIX}(?P<url>.*)$": {"url": "no-such-page/"},
    }


def _admin_object_kwargs(endpoint: Endpoint, world: World) -> dict[str, Any] | None:
    """For admin URLs of one model (admin/<app>/<model>/...<object_id>...): its first row."""
    parts = endpoint.route.split("/")
    if parts[0] != "admin" or len(parts) < 4 or "object_id" not in _params(endpoint.route):
        return None
    model = f"{parts[1]}/{parts[2]}"
    assert model in world.admin_objects, f"no {model} row for {endpoint.key}"
    return {"object_id": world.admin_objects[model]}


@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any, moto_server: str) -> Iterator[World]:
    """The personas and the objects, made once in a transaction rolled back at the end.

    Each test then runs in a savepoint of it (pytest-django's ``db``). AWS is the stand-in
    (an admin's "refresh validations" calls it), emptied first.
    """
    from access.tokens import create_api_token

    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    with (
        django_db_blocker.unblock(),
        override_settings(
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            AWS_ENDPOINT_URL=moto_server,
            AWS_MAX_ATTEMPTS=1,
        ),
        transaction.atomic(),
    ):
        personas = create_personas()
        objects = _make_objects(personas)
        clients: dict[str, dict[str, str]] = {"anonymous": {}}
        for persona in authz_matrix.PERSONAS[1:]:
            user = getattr(personas, persona)
            client = Client()
            client.force_login(user)
            clients[persona] = {
                "session": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "token": create_api_token(user, "matrix")[1],
            }
        admin_objects = {}
        for model in admin.site._registry:
            first = model._default_manager.order_by("pk").first()
            if first is not None:
                admin_objects[f"{model._meta.app_label}/{model._meta.model_name}"] = first.pk
        yield World(
            clients=clients,
            kwargs=_url_kwargs(objects),
            admin_objects=admin_objects,
            bodies=_bodies(objects),
        )
        transaction.set_rollback(True)


# Asking -----------------------------------------------------------------------------------
def classify(response: Any) -> str:
    """The outcome class of a response (see tests/authz_matrix.py)."""
    status = response.status_code
    if 200 <= status < 300:
        return "ok"
    if 300 <= status < 400:
        if urlsplit(response["Location"]).path == resolve_url(settings.LOGIN_URL):
            return "login"
        # Pages say no to a valid form by sending the user back with an error message.
        said = get_messages(response.wsgi_request)
        return "refused" if any(m.level >= messages.ERROR for m in said) else "redirect"
    return str(status)


def ask(world: World, endpoint: Endpoint, persona: str, method: str) -> tuple[str, str]:
    """The outcome class of one request, and a line saying what came back."""
    kwargs = world.kwargs.get(endpoint.key) or _admin_object_kwargs(endpoint, world) or {}
    missing = set(_params(endpoint.route)) - set(kwargs)
    assert not missing, f"{endpoint.key}: no object for {missing}; add one to _url_kwargs"
    path = build_path(endpoint.route, kwargs)
    match = resolve(path)
    assert match.route == endpoint.route, f"{path} reaches {match.route}, not {endpoint.route}"

    credentials = world.clients[persona]
    client = Client(raise_request_exception=False)
    if endpoint.is_api and "token" in credentials:
        client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {credentials['token']}"
    elif "session" in credentials:
        client.cookies[settings.SESSION_COOKIE_NAME] = credentials["session"]
    # Rate limits and throttles count in the cache: each request starts with none used.
    cache.clear()
    body = world.bodies.get(endpoint.key, {}) if method != "GET" else {}
    if method == "GET":
        response = client.get(path)
    elif endpoint.is_api:
        response = client.generic(method, path, json.dumps(body), "application/json")
    else:
        response = client.generic(method, path, urlencode(body, doseq=True), FORM)
    if 300 <= response.status_code < 400 and urlsplit(response["Location"]).path == resolve_url(
        "admin:login"
    ):
        # The admin's login page sends anonymous visitors on to the portal's login and
        # refuses the signed-in who are not admins: what it answers is the outcome.
        response = client.get(response["Location"])
    detail = f"{response.status_code}"
    if response.has_header("Location"):
        detail += f" to {response['Location']}"
    if getattr(response, "exc_info", None):
        detail += f" ({response.exc_info[1]!r})"  # type: ignore[attr-defined]  # the test client's
    return classify(response), detail


FORM = "application/x-www-form-urlencoded"


def _bodies(objects: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What each POST carries: a valid form, so that an answer says whether the persona
    may act, not that the form was empty. The admin's URLs get none: its permission checks
    come before its forms."""
    resource, level = objects["resource"].pk, objects["level"].pk
    rule = {
        "name": "On-call",
        "priority": "100",
        "allow_requests": "on",
        "max_duration": "86400",
        "recommended_duration": "3600",
        "require_reason": "on",
        "extension_policy": "same_as_request",
        "stages-TOTAL_FORMS": "1",
        "stages-INITIAL_FORMS": "0",
        "stages-MIN_NUM_FORMS": "0",
        "stages-MAX_NUM_FORMS": "3",
        "stages-0-order": "1",
        "stages-0-reviewers": "owners",
        "stages-0-mode": "any",
    }
    edit = {
        **rule,
        "stages-INITIAL_FORMS": "1",
        "stages-0-id": str(objects["stage"].pk),
        "stages-0-rule": str(objects["rule"].pk),
    }
    return {
        # Pages
        "api-token-create": {"name": "matrix"},
        "resource-rule-new": rule,
        "resource-rule-edit": edit,
        "request-new": {
            "resource": [resource],
            "level-0": level,
            "duration-0": "3600",
            "reason": "matrix",
        },
        "request-decide": {"decision": "approve", "comment": "matrix"},
        "grant-revoke": {"reason": "matrix", "confirm": "yes"},  # the confirmation's button
        "grant-extend": {"duration": "3600", "reason": "matrix"},
        # API
        "access-api:access-request-list": {
            "items": [{"resource": resource, "access_level": level, "duration_seconds": 3600}],
            "reason": "matrix",
        },
        "access-api:access-request-approve": {"comment": "matrix"},
        "access-api:access-request-deny": {"comment": "matrix"},
        "access-api:grant-revoke": {"reason": "matrix"},
        "access-api:grant-extend": {"duration_seconds": 3600, "reason": "matrix"},
        "access-api:api-token-list": {"name": "matrix", "expires_in_days": 1},
    }


# The tests --------------------------------------------------------------------------------
ENDPOINTS = endpoints()
CASES = [(endpoint, method) for endpoint in ENDPOINTS for method in endpoint.methods]


class KnownBug(AssertionError):
    """A cell of the table the app does not meet yet, listed in authz_matrix.KNOWN_BUGS."""


def _case(endpoint: Endpoint, method: str) -> Any:
    bugs = authz_matrix.known_bugs(endpoint.key, method)
    marks = []
    if bugs:
        reason = "; ".join(sorted(set(bugs.values())))
        marks.append(pytest.mark.xfail(strict=True, raises=KnownBug, reason=reason))
    return pytest.param(endpoint, method, id=f"{method} {endpoint.key}", marks=marks)


@pytest.mark.parametrize(("endpoint", "method"), [_case(e, m) for e, m in CASES])
def test_each_persona_gets_what_the_table_says(
    world: World, db: Any, endpoint: Endpoint, method: str
) -> None:
    got: dict[str, str] = {}
    details: dict[str, str] = {}
    for persona in authz_matrix.PERSONAS:
        with transaction.atomic():
            got[persona], details[persona] = ask(world, endpoint, persona, method)
            transaction.set_rollback(True)
    expected = authz_matrix.MATRIX.get(endpoint.key, {}).get(method)
    if expected is None:
        pytest.fail(
            f"{method} {endpoint.route} ({endpoint.key}) has no row in tests/authz_matrix.py. "
            "Add one saying what each persona should get; the app answers now:\n  "
            + authz_matrix.format_row(endpoint.key, method, got)
        )
    bugs = authz_matrix.known_bugs(endpoint.key, method)
    wrong = [p for p in authz_matrix.PERSONAS if got[p] != expected[p] and p not in bugs]
    fixed = [p for p in bugs if got[p] == expected[p]]
    if wrong or fixed:
        lines = [f"{method} {endpoint.route} ({endpoint.key}) differs from tests/authz_matrix.py:"]
        lines += [
            f"  {p}: the table says {expected[p]}, the app answers {got[p]} ({details[p]})"
            for p in wrong
        ]
        lines += [
            f"  {p}: answers {got[p]} as the table says, so KNOWN_BUGS no longer applies: "
            f"remove ({endpoint.key!r}, {method!r}, {p!r}) ({bugs[p]})"
            for p in fixed
        ]
        lines.append("The row as the app answers now:")
        lines.append("  " + authz_matrix.format_row(endpoint.key, method, got))
        pytest.fail("\n".join(lines))
    if bugs:
        raise KnownBug(
            "\n".join(f"{p}: got {got[p]} ({details[p]}): {bug}" for p, bug in bugs.items())
        )


def test_the_table_has_no_row_for_a_url_that_is_gone() -> None:
    asked = {(endpoint.key, method) for endpoint, method in CASES}
    stale = sorted(
        f"{method} {key}"
        for key, methods in authz_matrix.MATRIX.items()
        for method in methods
        if (key, method) not in asked
    )
    assert not stale, f"Rows in tests/authz_matrix.py for URLs or methods that are gone: {stale}"
    unknown_bugs = sorted(
        f"{method} {key}"
        for key, method, _ in authz_matrix.KNOWN_BUGS
        if (key, method) not in asked
    )
    assert not unknown_bugs, f"KNOWN_BUGS names cells that are gone: {unknown_bugs}"


def test_the_walk_reaches_the_api_routers_and_every_model_admin() -> None:
    """The URL conf is the source; this checks it includes what the table must cover."""
    from access.api.urls import router as access_router
    from audit.api.urls import router as audit_router

    keys = {endpoint.key for endpoint in ENDPOINTS}
    for namespace, router in (("access-api", access_router), ("audit-api", audit_router)):
        for url in router.urls:
            assert f"{namespace}:{url.name}" in keys  # type: ignore[union-attr]  # routes only
    for model, model_admin in admin.site._registry.items():
        for url in model_admin.urls:
            if url.name:
                assert f"admin:{url.name}" in keys, f"{model.__name__}: admin:{url.name}"
    assert "admin:index" in keys and "api-schema" in keys
