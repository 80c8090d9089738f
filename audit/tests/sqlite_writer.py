"""A writer process for test_processes: records events once every writer has started.

Run as ``python -m audit.tests.sqlite_writer NAME READY_DIR WRITERS COUNT`` with
DATABASE_URL pointing at the database to write to.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(name: str, ready_dir: Path, writers: int, count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from audit.models import AuditEvent
    from audit.services import record_event

    original = AuditEvent.compute_hash

    def compute_hash(self: AuditEvent) -> str:
        # Between reading the previous hash and inserting: pausing here invites
        # the other writers to read the same previous hash, unless they wait.
        time.sleep(0.002)
        return original(self)

    AuditEvent.compute_hash = compute_hash  # type: ignore[method-assign]

    # A barrier across processes: start writing only when every writer is up.
    (ready_dir / name).touch()
    deadline = time.monotonic() + 60
    while len(list(ready_dir.iterdir())) < writers:
        if time.monotonic() > deadline:
            sys.exit(f"{name}: the other writers did not start within 60 seconds")
        time.sleep(0.005)
    for i in range(count):
        record_event("test.concurrent", actor_name=name, details={"i": i})


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
