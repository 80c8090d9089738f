"""The demo's commands find the running demo's settings (config.running_demo), and say
what to do when no demo runs, instead of asking for production secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from config import running_demo


def manage(*args: str, var_dir: Path) -> subprocess.CompletedProcess[str]:
    """manage.py as a newcomer runs it: a fresh shell's environment, nothing set."""
    return subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *args],
        env={"PATH": os.environ["PATH"], "HOME": str(var_dir), "PORTCULLIS_VAR_DIR": str(var_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_a_demo_the_command_says_to_start_one(tmp_path):
    ran = manage("standin_change", "run-instance", var_dir=tmp_path)
    assert ran.returncode == 1
    assert "standin_change works against the running demo, and none is running" in ran.stderr
    assert "make demo" in ran.stderr
    assert "SECRET_KEY" not in ran.stderr


def test_its_help_needs_no_demo(tmp_path):
    ran = manage("standin_change", "--help", var_dir=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "terminate-instance" in ran.stdout


def test_other_commands_still_need_production_settings(tmp_path):
    running_demo.write(tmp_path, {"DEBUG": "true"})
    ran = manage("check", var_dir=tmp_path)
    assert ran.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in ran.stderr


def test_the_file_of_a_demo_that_died_is_ignored_and_only_its_writer_removes_it(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    (tmp_path / running_demo.FILE_NAME).write_text(
        f'{{"pid": {int(dead.stdout)}, "env": {{"DEBUG": "true"}}}}'
    )
    (tmp_path / running_demo.FILE_NAME).chmod(0o600)
    assert running_demo.read(tmp_path) is None
    running_demo.remove(tmp_path)  # not ours: left alone
    assert (tmp_path / running_demo.FILE_NAME).exists()

    running_demo.write(tmp_path, {"DEBUG": "true", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    assert running_demo.read(tmp_path) == {
        "DEBUG": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
    }
    running_demo.remove(tmp_path)
    assert not (tmp_path / running_demo.FILE_NAME).exists()


def test_only_a_private_file_of_the_demos_keys_counts(tmp_path, monkeypatch):
    """The file holds the demo's database URL and the stand-in's credentials: this user's
    only. One others may read or write (planted, or left by another user) is not trusted,
    and of a trusted one only the demo's keys are taken."""
    path = running_demo.write(
        tmp_path, {"DEBUG": "true", "HTTPS_PROXY": "http://evil.example:3128"}
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert running_demo.read(tmp_path) == {"DEBUG": "true"}
    path.write_text(path.read_text().replace('"DEBUG"', '"HTTPS_PROXY": "x", "DEBUG"'))
    assert running_demo.read(tmp_path) == {"DEBUG": "true"}
    path.chmod(0o644)
    assert running_demo.read(tmp_path) is None
    path.chmod(0o600)
    # A shell with production settings never takes the demo's DEBUG.
    monkeypatch.delenv("DEBUG", raising=False)
    monkeypatch.setenv("PORTCULLIS_VAR_DIR", str(tmp_path))
    for key, value in (("SECRET_KEY", "x" * 50), ("SECRET_KEY_FILE", str(tmp_path / "key"))):
        with monkeypatch.context() as production:
            production.delenv("SECRET_KEY", raising=False)
            production.setenv(key, value)
            running_demo.prepare(["manage.py", "standin_change"], tmp_path)
            assert "DEBUG" not in os.environ, key
    # A link in the file's place is not followed.
    path.rename(tmp_path / "elsewhere")
    path.symlink_to(tmp_path / "elsewhere")
    assert running_demo.read(tmp_path) is None
