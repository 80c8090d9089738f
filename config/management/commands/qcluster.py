"""``manage.py qcluster``: django-q2's task cluster, plus the long-running loops.

It replaces django-q2's command of the same name (config is installed before django_q),
so the process operators deploy stays the same. Besides django-q2's workers, which run
bounded tasks and schedules, it runs each declared loop (config.loops) in its own process,
and on SIGTERM or SIGINT tells both to stop at once: the loops stop within
config.loops.STOP_TIMEOUT (about a second), django-q2's workers when they finish the task
they are running (at once when idle).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django_q.cluster import Cluster

from config import loops

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Starts the task cluster: django-q2's workers and Portcullis's long-running loops."
    exit_code = 0  # 1 when django-q2's sentinel died under it

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--run-once", action="store_true", help="Start, then stop at once (a check)."
        )
        parser.add_argument(
            "-n",
            "--name",
            dest="cluster_name",
            default=None,
            help="Cluster (queue) name instead of Q_CLUSTER's, as django-q2's command.",
        )
        parser.add_argument(
            "--no-loops",
            action="store_true",
            help="Run only django-q2's workers (another cluster runs the loops).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings.SECRET_KEY  # noqa: B018  signing needs it: fail now rather than per task
        if options["cluster_name"]:
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        stopping = loops.SignalStop()  # never a threading.Event in a handler: it can deadlock

        cluster = Cluster()  # it installs its own handlers; ours replace them
        # Only a flag: the stop itself (joining processes) runs in the main loop.
        signal.signal(signal.SIGTERM, stopping.set)
        signal.signal(signal.SIGINT, stopping.set)
        supervisor = loops.Supervisor([] if options["no_loops"] else loops.declared_loops())
        supervisor.start()
        cluster.start()
        try:
            while not stopping.is_set() and not options["run_once"]:
                if not cluster.sentinel.is_alive():
                    logger.error("django-q2's sentinel died; stopping the cluster.")
                    self.exit_code = 1
                    break
                supervisor.check()
                stopping.wait(0.25)
        finally:
            # Both told at once: django-q2's sentinel takes about a second to stop its
            # pusher, workers and monitor, the loops as long; neither waits for the other.
            supervisor.tell_stop()
            _tell_sentinel(cluster)
            supervisor.stop()
            while cluster.sentinel.is_alive():
                cluster.sentinel.join(0.25)

    def run_from_argv(self, argv: list[str]) -> None:
        """From the command line only (not call_command): once every process it started has
        stopped, the process ends without the interpreter's teardown (loops.exit_now)."""
        super().run_from_argv(argv)
        loops.exit_now(self.exit_code)


def _tell_sentinel(cluster: Cluster) -> None:
    """Sets django-q2's stop event from a thread of its own: the event's lock is shared with
    the sentinel, and a sentinel that died holding it (a SIGTERM to the whole process group
    kills it at once: django-q2 leaves it the default handler) would block the setter for
    good. The join above then sees the sentinel gone."""
    if cluster.sentinel.is_alive():
        threading.Thread(target=cluster.stop_event.set, name="stop-sentinel", daemon=True).start()
