import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_rate, env_str


def test_it_reads_booleans_and_names_a_bad_one(monkeypatch):
    monkeypatch.setenv("PORTCULLIS_FLAG", "yes")
    assert env_bool("PORTCULLIS_FLAG") is True
    monkeypatch.setenv("PORTCULLIS_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="PORTCULLIS_FLAG='maybe' is not a boolean"):
        env_bool("PORTCULLIS_FLAG")


def test_it_names_a_bad_integer(monkeypatch):
    monkeypatch.setenv("PORTCULLIS_N", "ten")
    with pytest.raises(ImproperlyConfigured, match="PORTCULLIS_N='ten' is not an integer"):
        env_int("PORTCULLIS_N", 1)


def test_it_splits_lists_and_reads_secrets_from_files(monkeypatch, tmp_path):
    monkeypatch.setenv("PORTCULLIS_HOSTS", "a.example.com, b.example.com,")
    assert env_list("PORTCULLIS_HOSTS") == ["a.example.com", "b.example.com"]
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("PORTCULLIS_SECRET_FILE", str(secret))
    assert env_str("PORTCULLIS_SECRET") == "from-a-file"
    monkeypatch.setenv("PORTCULLIS_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="PORTCULLIS_SECRET_FILE"):
        env_str("PORTCULLIS_SECRET")


def test_it_reads_rates_and_names_a_bad_one(monkeypatch):
    monkeypatch.setenv("PORTCULLIS_RATE", " 30/Minute ")
    assert env_rate("PORTCULLIS_RATE", "1/s") == "30/minute"
    monkeypatch.delenv("PORTCULLIS_RATE")
    assert env_rate("PORTCULLIS_RATE", "1/s") == "1/s"
    for bad in ("30", "30 per minute", "x/minute", "30/fortnight", "-1/minute"):
        monkeypatch.setenv("PORTCULLIS_RATE", bad)
        with pytest.raises(ImproperlyConfigured, match="PORTCULLIS_RATE=.* is not a rate"):
            env_rate("PORTCULLIS_RATE", "1/s")


@pytest.mark.parametrize("name", ["DATABASE_URL", "MIGRATE_DATABASE_URL", "REDIS_URL"])
def test_error_reports_hide_the_passwords_in_connection_urls(settings, name):
    """Django's error page and the error mails to ADMINS list the settings; a URL with a
    password (the tables' owner's, in MIGRATE_DATABASE_URL) must not be among them."""
    from django.views.debug import get_default_exception_reporter_filter

    setattr(settings, name, "postgres://owner:owner-password@db.internal:5432/portcullis")

    shown = get_default_exception_reporter_filter().get_safe_settings()

    assert "owner-password" not in str(shown[name])


def _postgres_options(**env):
    """What config.settings gives PostgreSQL as OPTIONS under ``env`` (a fresh interpreter:
    settings are read once)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    program = (
        "import json; from config import settings; "
        "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "DEBUG": "true", "DATABASE_URL": "postgres://u:p@127.0.0.1/x", **env},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, (json.loads(done.stdout) if done.returncode == 0 else done.stderr)


def test_prepared_statements_are_opt_in_and_a_bad_threshold_is_named():
    # Off by default: bound by the server, a statement takes at most 65,535 parameters.
    assert _postgres_options() == (0, {})
    assert _postgres_options(DB_PREPARE_THRESHOLD="off") == (0, {})
    assert _postgres_options(DB_PREPARE_THRESHOLD="5") == (
        0,
        {"server_side_binding": True, "prepare_threshold": 5},
    )
    code, error = _postgres_options(DB_PREPARE_THRESHOLD="soon")
    assert code != 0
    assert "DB_PREPARE_THRESHOLD='soon' is neither 'off' nor a whole number" in error
