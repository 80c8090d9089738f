"""The setup services: the External ID, the OIDC settings (secret kept secret) and the
issuer's discovery check, against the test identity provider and a local HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection

from access.fields import decrypt
from audit.models import AuditEvent
from aws_integration import outbound, services
from aws_integration.models import AwsSettings

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-client-secret-value"


# A tiny issuer whose answers each test chooses ---------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, str, float, dict[str, str], bool]] = {}

    def do_GET(self) -> None:
        status, content_type, body, delay, headers, length = self.routes.get(
            self.path, (404, "text/plain", "not found", 0, {}, True)
        )
        if delay:
            time.sleep(delay)
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:  # without it, the body ends when the connection closes (HTTP/1.0)
            self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


class FakeIssuer:
    def __init__(self, url: str) -> None:
        self.url = url
        _Handler.routes = {}

    def serve(
        self, path: str, body: Any, *, status: int = 200, content_type: str = "application/json",
        delay: float = 0, headers: dict[str, str] | None = None, length: bool = True,
    ) -> None:  # fmt: skip
        text = body if isinstance(body, str) else json.dumps(body)
        _Handler.routes[path] = (status, content_type, text, delay, headers or {}, length)

    def discovery(self, **overrides: Any) -> dict[str, Any]:
        document = {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
        }
        document.update(overrides)
        return {k: v for k, v in document.items() if v is not None}


@pytest.fixture
def issuer() -> Iterator[FakeIssuer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield FakeIssuer(f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


# External ID ---------------------------------------------------------------------------------
def test_the_settings_row_is_created_once_and_its_creation_audited():
    first = services.get_aws_settings()
    again = services.get_aws_settings()
    assert first.pk == again.pk and first.external_id == again.external_id
    assert first.external_id.startswith("portcullis-") and len(first.external_id) > 40
    (event,) = AuditEvent.objects.filter(action="aws.settings.created")
    assert first.external_id not in json.dumps(event.details)


def test_regenerating_the_external_id_replaces_it_and_audits_masked_values(personas):
    old = services.get_aws_settings().external_id
    updated = services.regenerate_external_id(personas.admin)
    assert updated.external_id != old
    assert AwsSettings.objects.get().external_id == updated.external_id
    assert updated.external_id_rotated_at is not None
    (event,) = AuditEvent.objects.filter(action="aws.external_id.regenerated")
    assert event.actor_id == personas.admin.pk
    assert event.details == {
        "before": {"external_id": old[:15] + "…"},
        "after": {"external_id": updated.external_id[:15] + "…"},
    }
    assert old not in json.dumps(event.details)
    assert updated.external_id not in json.dumps(event.details)


# OIDC settings --------------------------------------------------------------------------------
def test_updating_the_settings_audits_before_and_after_with_the_secret_redacted(personas):
    obj = services.get_aws_settings()
    services.update_aws_settings(
        obj,
        {
            "oidc_issuer_url": "https://login.example.com",
            "oidc_client_id": "portcullis",
            "oidc_client_secret": SECRET,
        },
        personas.admin,
    )
    assert obj.oidc_client_secret == SECRET  # the caller's object is refreshed
    (event,) = AuditEvent.objects.filter(action="aws.settings.updated")
    assert event.actor_id == personas.admin.pk
    assert event.details["before"]["oidc_issuer_url"] == ""
    assert event.details["after"]["oidc_issuer_url"] == "https://login.example.com"
    assert event.details["before"]["oidc_client_secret"] == ""
    assert event.details["after"]["oidc_client_secret"] == "[redacted]"
    assert event.details["changed"] == ["oidc_client_id", "oidc_client_secret", "oidc_issuer_url"]
    assert SECRET not in json.dumps(event.details)


def test_a_new_secret_alone_is_recorded_as_changed_without_its_value(personas):
    obj = services.get_aws_settings()
    services.update_aws_settings(obj, {"oidc_client_secret": SECRET}, personas.admin)
    services.update_aws_settings(obj, {"oidc_client_secret": SECRET + "-2"}, personas.admin)
    last = AuditEvent.objects.filter(action="aws.settings.updated").latest("id")
    assert last.details["changed"] == ["oidc_client_secret"]
    assert last.details["before"] == last.details["after"]  # both say only "[redacted]"
    assert SECRET not in json.dumps(last.details)


def test_saving_the_same_values_records_nothing(personas):
    obj = services.get_aws_settings()
    services.update_aws_settings(obj, {"oidc_client_id": "portcullis"}, personas.admin)
    count = AuditEvent.objects.count()
    services.update_aws_settings(obj, {"oidc_client_id": "portcullis"}, personas.admin)
    assert AuditEvent.objects.count() == count


def test_it_refuses_to_change_anything_but_the_oidc_settings(personas):
    obj = services.get_aws_settings()
    with pytest.raises(ValueError, match="external_id"):
        services.update_aws_settings(obj, {"external_id": "mine"}, personas.admin)
    assert AwsSettings.objects.get().external_id == obj.external_id


def test_the_client_secret_is_encrypted_at_rest(personas):
    obj = services.get_aws_settings()
    services.update_aws_settings(obj, {"oidc_client_secret": SECRET}, personas.admin)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT oidc_client_secret FROM {AwsSettings._meta.db_table} WHERE id = %s",
            [obj.pk],
        )
        (raw,) = cursor.fetchone()
    assert raw and SECRET not in raw
    assert decrypt(raw) == SECRET
    assert AwsSettings.objects.get().oidc_client_secret == SECRET


# Discovery check ---------------------------------------------------------------------------------
def test_the_discovery_check_passes_against_the_test_identity_provider(idp):
    ok, message = services.check_oidc_discovery(idp)
    assert ok, message
    assert message == (
        f"The discovery document at {idp}/.well-known/openid-configuration is valid (issuer {idp})."
    )


def test_the_discovery_check_names_an_issuer_that_does_not_match(issuer):
    # AWS compares the token's issuer exactly: a document naming another one is useless.
    issuer.serve(
        "/.well-known/openid-configuration",
        issuer.discovery(issuer="https://login.example.com"),
    )
    ok, message = services.check_oidc_discovery(issuer.url)
    assert not ok
    assert message.endswith(
        f"names the issuer “https://login.example.com”, not “{issuer.url}”: enter exactly "
        "“https://login.example.com” as the issuer URL."
    )


def test_the_discovery_check_says_when_nothing_answers():
    ok, message = services.check_oidc_discovery("http://127.0.0.1:9")
    assert not ok
    assert message.startswith(
        "Cannot connect to http://127.0.0.1:9/.well-known/openid-configuration"
    )


def test_the_discovery_check_says_when_the_document_is_missing(idp):
    ok, message = services.check_oidc_discovery(f"{idp}/no-such-tenant")
    assert not ok
    assert message == (
        f"The discovery document at {idp}/no-such-tenant/.well-known/openid-configuration "
        "answered HTTP 404, not 200: is the issuer URL right?"
    )


@pytest.mark.parametrize(
    "url, expected",
    [
        ("login.example.com", "“login.example.com” is not a URL"),
        ("https://login.example.com/?tenant=1", "no query or fragment"),
    ],
)
def test_the_discovery_check_refuses_issuer_urls_aws_would_refuse(url, expected):
    ok, message = services.check_oidc_discovery(url)
    assert not ok and expected in message


def test_the_discovery_check_says_when_the_answer_is_not_json(issuer):
    issuer.serve(
        "/.well-known/openid-configuration", "<html>login</html>", content_type="text/html"
    )
    ok, message = services.check_oidc_discovery(issuer.url)
    assert not ok
    assert message.endswith("is not JSON (text/html).")


def test_the_discovery_check_names_the_missing_endpoints(issuer):
    issuer.serve(
        "/.well-known/openid-configuration",
        issuer.discovery(jwks_uri=None, token_endpoint=None),
    )
    ok, message = services.check_oidc_discovery(issuer.url)
    assert not ok
    assert message.endswith("lacks jwks_uri, token_endpoint.")


def test_the_discovery_check_needs_signing_keys(issuer):
    issuer.serve("/.well-known/openid-configuration", issuer.discovery())
    issuer.serve("/jwks", {"keys": []})
    ok, message = services.check_oidc_discovery(issuer.url)
    assert not ok
    assert message == f"The signing keys at {issuer.url}/jwks hold no keys."

    issuer.serve("/jwks", {"keys": [{"kty": "RSA", "kid": "1", "n": "x", "e": "AQAB"}]})
    ok, message = services.check_oidc_discovery(issuer.url)
    assert ok, message


def test_the_discovery_check_gives_up_after_its_timeout(issuer, monkeypatch):
    monkeypatch.setattr(outbound, "TIMEOUT_SECONDS", 0.3)
    issuer.serve("/.well-known/openid-configuration", issuer.discovery(), delay=1.5)
    ok, message = services.check_oidc_discovery(issuer.url)
    assert not ok
    assert message.endswith("did not answer within 0.3 s.")
