"""Production settings: `check --deploy` is clean, and missing secrets stop the start-up.

Each case runs manage.py in a fresh interpreter, because settings are read once
per process from the environment.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
# Variables from the developer's or CI's shell that would change what is checked.
_DROPPED = (
    "DEBUG",
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "FIELD_ENCRYPTION_KEYS",
    "FIELD_ENCRYPTION_KEYS_FILE",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DJANGO_SETTINGS_MODULE",
    "TRUSTED_PROXY_COUNT",
    "API_THROTTLE_ANON",
    "API_THROTTLE_USER",
    "API_THROTTLE_TOKEN_CREATE",
    "USE_X_FORWARDED_FOR",
    # Set while a browser test's Chromium is open; check --deploy rightly objects.
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _DROPPED
        and not key.startswith(("SECURE_", "SSO_", "SESSION_", "PORTCULLIS_"))
    }
    env.update(
        SECRET_KEY=secrets.token_urlsafe(64),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="portcullis.example.com",
        CSRF_TRUSTED_ORIGINS="https://portcullis.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'portcullis.sqlite3'}",
        PORTCULLIS_VAR_DIR=str(tmp_path / "var"),
    )
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_deployment_check_is_clean_with_production_settings(tmp_path):
    env = production_env(tmp_path)
    assert len(env["SECRET_KEY"]) >= 50
    assert "DEBUG" not in env

    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout + result.stderr


def test_the_deployment_check_still_sees_a_weak_setting(tmp_path):
    # The check above is only worth something if the check can fail here.
    env = production_env(tmp_path, SECRET_KEY="too-short")

    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode != 0
    assert "security.W009" in result.stderr


@pytest.mark.parametrize("debug", [None, "false"])
def test_settings_refuse_to_load_without_a_secret_key_when_debug_is_off(tmp_path, debug):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    if debug is not None:
        env["DEBUG"] = debug

    result = manage(env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is required when DEBUG is off" in result.stderr


def test_settings_refuse_to_load_without_an_encryption_key_when_debug_is_off(tmp_path):
    env = production_env(tmp_path)
    del env["FIELD_ENCRYPTION_KEYS"]

    result = manage(env, "check")

    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS is required when DEBUG is off" in result.stderr


def test_only_the_migrations_check_runs_without_secrets(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"], env["FIELD_ENCRYPTION_KEYS"]

    migrations = manage(env, "makemigrations", "--check", "--dry-run")
    check = manage(env, "check")

    assert migrations.returncode == 0, migrations.stdout + migrations.stderr
    assert "No changes detected" in migrations.stdout
    assert check.returncode != 0
    assert "SECRET_KEY is required" in check.stderr


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("TRUSTED_PROXY_COUNT", "-1", "TRUSTED_PROXY_COUNT=-1 must be 0 or more"),
        ("TRUSTED_PROXY_COUNT", "two", "TRUSTED_PROXY_COUNT='two' is not an integer"),
        # It believed the client's own first hop; a deployment that set it is told what now.
        ("USE_X_FORWARDED_FOR", "true", "USE_X_FORWARDED_FOR is gone"),
    ],
)
def test_settings_refuse_a_bad_proxy_setting(tmp_path, variable, value, message):
    result = manage(production_env(tmp_path, **{variable: value}), "check")

    assert result.returncode != 0
    assert message in result.stderr
