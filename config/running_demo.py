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
# The commands that work against the running demo only.
DEMO_COMMANDS = frozenset({"standin_change"})
HELP_FLAGS = frozenset({"-h", "--help"})


def var_dir(base_dir: Path) -> Path:
    """Where settings put the var directory (``PORTCULLIS_VAR_DIR``, else ``var/``)."""
    return Path(os.environ.get("PORTCULLIS_VAR_DIR") or base_dir / "var")


def write(directory: Path, env: dict[str, str]) -> Path:
    path = directory / FILE_NAME
    path.write_text(json.dumps({"pid": os.getpid(), "env": env}, indent=2))
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
    """The environment of the demo running now, or None when none is."""
    try:
        written = json.loads((directory / FILE_NAME).read_text())
        pid, env = int(written["pid"]), dict(written["env"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left behind by a demo that was killed
    except PermissionError:
        pass  # running, as another user
    return {str(k): str(v) for k, v in env.items()}


def prepare(argv: list[str], base_dir: Path) -> str:
    """For a demo command: the running demo's environment, under what the caller set
    themselves. Returns what to tell the caller when there is no demo to work against
    ("" when the command may go on)."""
    if argv[1:2] == [] or argv[1] not in DEMO_COMMANDS:
        return ""
    directory = var_dir(base_dir)
    env = read(directory)
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
