"""The security headers every response carries: the Content-Security-Policy (no inline
script or style), nosniff, the referrer policy, no framing, the opener policy; and with
production settings, HSTS, the redirect to https and cookies sent over https only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.test import Client

from tests.test_deploy_check import BASE_DIR, production_env

EXPECTED_CSP = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "manifest-src": ["'self'"],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
    "frame-ancestors": ["'none'"],
}


def directives(header: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def assert_common_headers(response) -> None:
    assert directives(response["Content-Security-Policy"]) == EXPECTED_CSP
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/catalogue/",
        "/settings/tokens/",
        "/audit/",
        "/admin/",
        "/api/v1/me/",
        "/api/schema/",
        "/api/docs/",
        "/api/docs/?script=",
        "/healthz",
    ],
)
def test_every_kind_of_response_carries_the_security_headers(personas, url):
    client = Client()
    client.force_login(personas.admin)

    response = client.get(url)

    assert response.status_code == 200, url
    assert_common_headers(response)


def test_refusals_and_anonymous_pages_carry_them_too(db):
    response = Client().get("/api/v1/me/")
    assert response.status_code == 401
    assert_common_headers(response)
    assert_common_headers(Client().get("/no-such-page/"))
    login = Client().get("/accounts/login/")
    assert login.status_code == 200
    assert_common_headers(login)


def test_no_template_writes_inline_script_or_style(personas):
    # What the policy would refuse, the pages do not even contain.
    client = Client()
    client.force_login(personas.admin)
    pages = [Client().get("/accounts/login/")]
    pages += [client.get(url) for url in ["/", "/catalogue/", "/audit/", "/api/docs/"]]
    for response in pages:
        assert response.status_code == 200
        url, page = response.request["PATH_INFO"], response.content.decode()
        assert "<style" not in page, url
        assert ' style="' not in page, url
        for chunk in page.split("<script")[1:]:
            assert chunk.lstrip().startswith("src=") or " src=" in chunk.split(">")[0], url


PROBE = """
import json, django
django.setup()
from django.core.management import call_command
from django.test import Client
call_command("migrate", verbosity=0)
client = Client(HTTP_HOST="portcullis.example.com")
plain = client.get("/accounts/login/")
page = client.get("/accounts/login/", secure=True)
cookie = page.cookies["csrftoken"]
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "status": page.status_code,
    "headers": dict(page.headers),
    "csrf_cookie": {"secure": bool(cookie["secure"]), "samesite": cookie["samesite"]},
    "session_cookie_secure": django.conf.settings.SESSION_COOKIE_SECURE,
    "session_cookie_httponly": django.conf.settings.SESSION_COOKIE_HTTPONLY,
}))
"""


def test_production_settings_add_hsts_the_https_redirect_and_secure_cookies(tmp_path):
    env = production_env(tmp_path, DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["plain"] == [301, "https://portcullis.example.com/accounts/login/"]
    assert seen["status"] == 200
    headers = seen["headers"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert directives(headers["Content-Security-Policy"]) == EXPECTED_CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert seen["csrf_cookie"] == {"secure": True, "samesite": "Lax"}
    assert seen["session_cookie_secure"] is True
    assert seen["session_cookie_httponly"] is True
