"""The running demo's environment, so that the commands it prints work as printed.

`manage.py demo` writes what its processes run with (DEBUG, the demo's database, the
stand-in AWS's endpoint and credentials) to ``demo.env`` in the var directory while it
runs, and removes it when it stops. `manage.py standin_change`, which only makes sense
against the running demo, takes its environment from there, so that a newcomer types
``.venv/bin/python manage.py standin_change run-instance`` and nothing more. Standard
library only: manage.py reads it before Django's settings exist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE_NAME = "demo.env"
# What the file may set: the demo's database and var directory, and the stand-in AWS. A
# file that says more (HTTPS_PROXY, a settings module) is not the demo's.
KEYS = frozenset(
    {
        "DEBUG",
        "DATABASE_URL",
        "PORTCULLIS_VAR_DIR",
        "SITE_URL",
        "EMAIL_BACKEND",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
    }
)
# The commands that work against the running demo only.
DEMO_COMMANDS = frozenset({"standin_change"})
HELP_FLAGS = frozenset({"-h", "--help"})


def var_dir(base_dir: Path) -> Path:
    """Where settings put the var directory (``PORTCULLIS_VAR_DIR``, else ``var/``)."""
    return Path(os.environ.get("PORTCULLIS_VAR_DIR") or base_dir / "var")


def write(directory: Path, env: dict[str, str]) -> Path:
    """Writes the file readable and writable by this user only (it holds the demo's
    database URL and the stand-in's credentials)."""
    path = directory / FILE_NAME
    wanted = {key: value for key, value in env.items() if key in KEYS}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)  # a file that was there keeps its mode otherwise
    with os.fdopen(descriptor, "w") as file:
        file.write(json.dumps({"pid": os.getpid(), "env": wanted}, indent=2))
    return path


def remove(directory: Path) -> None:
    path = directory / FILE_NAME
    try:
        # Only the demo that wrote it removes it (a second demo may have replaced it).
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def read(directory: Path) -> dict[str, str] | None:
    """The environment of the demo running now, or None when none is. Only a file this user
    owns and nobody else may read or write counts; of it, only ``KEYS``."""
    path = directory / FILE_NAME
    try:
        # Checked on the file opened, not on a name that could be swapped in between.
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), encoding="utf-8") as file:
            status = os.fstat(file.fileno())
            if status.st_uid != os.getuid() or status.st_mode & 0o077:
                return None
            written = json.loads(file.read())
        pid, env = int(written["pid"]), dict(written["env"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left behind by a demo that was killed
    except PermissionError:
        pass  # running, as another user
    return {str(k): str(v) for k, v in env.items() if str(k) in KEYS}


def prepare(argv: list[str], base_dir: Path) -> str:
    """For a demo command: the running demo's environment, under what the caller set
    themselves. Returns what to tell the caller when there is no demo to work against
    ("" when the command may go on)."""
    if argv[1:2] == [] or argv[1] not in DEMO_COMMANDS:
        return ""
    directory = var_dir(base_dir)
    # A shell with production settings (a SECRET_KEY, or its file) never takes the demo's
    # DEBUG.
    production = os.environ.get("SECRET_KEY") or os.environ.get("SECRET_KEY_FILE")
    env = None if production else read(directory)
    if env is not None:
        for key, value in env.items():
            os.environ.setdefault(key, value)
        return ""
    if HELP_FLAGS.intersection(argv[2:]):
        os.environ.setdefault("DEBUG", "true")  # help changes nothing anywhere
        return ""
    if os.environ.get("DEBUG") and os.environ.get("AWS_ENDPOINT_URL"):
        return ""  # pointed at a stand-in by hand
    return (
        f"{argv[1]} works against the running demo, and none is running "
        f"(no {directory / FILE_NAME}). Start it with `make demo` in another terminal, "
        "then run this again."
    )
