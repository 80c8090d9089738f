"""The long-running loops of the task cluster (the grant engine, the events poller), and the
supervisor that runs them beside django-q2's workers in the one ``qcluster`` process.

Why not as django-q2 tasks: a task holds a worker for as long as it runs, and django-q2
stops its workers only between tasks, without telling a running task that the cluster got
SIGTERM. A loop run as a task therefore either ends every so often (leaving a gap, or a
hand-over protocol between runs) or holds up the cluster's stop until it is killed. Here
each loop is its own process, forked by ``manage.py qcluster`` (Portcullis's version of
django-q2's command): it gets the stop at once, stops within about a second, and is
started again by the supervisor if it dies. Operators still deploy one process type, and
every cluster runs every loop: a lease (access.leases) lets one of them work and the
others stand by to take over.

Each app may declare its loops in ``<app>/loops.py`` as ``LOOPS``, a list of :class:`Loop`.
A loop function takes a :class:`Stop` and returns when it is set.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from django.db import connections
from django.utils.module_loading import import_string

from config.declarations import declared

logger = logging.getLogger(__name__)

# How long the supervisor waits for a loop to stop after telling it, before killing it.
STOP_TIMEOUT = 2.0
# Waits before starting a loop again after it died, growing to the last one.
RESTART_BACKOFF = (1.0, 2.0, 5.0, 15.0, 30.0)


def keep_connections() -> None:
    """Between two rounds of a loop (or two jobs of a loop's thread): closes this thread's
    database connections only after an error (or when left inside a transaction), so that
    the next round opens them anew.
    Unlike Django's per-request ``close_old_connections`` it ignores DB_CONN_MAX_AGE, which
    is for web requests: a loop that opened a connection every round (four times a second
    for the grant engine) would spend more on connecting than on its work, and lose what
    PostgreSQL prepared for it."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"] or conn.errors_occurred:
            # Left in a transaction, or an error: the database may have gone away, or (with
            # prepared statements) a migration changed what a prepared statement reads.
            # A new connection costs little next to an error repeated every round.
            conn.close()


class Stop(Protocol):
    """What a loop is given: it returns soon after ``is_set()`` becomes true. ``wait``
    sleeps up to ``seconds`` and returns True early when the stop comes."""

    def is_set(self) -> bool: ...

    def wait(self, seconds: float) -> bool: ...


class StopAfter:
    """A Stop that comes by itself after ``seconds`` (one-off runs and tests), or at ``set()``."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.event = threading.Event()

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set() or time.monotonic() >= self.deadline

    def wait(self, seconds: float) -> bool:
        left = self.deadline - time.monotonic()
        return self.event.wait(max(0.0, min(seconds, left))) or self.is_set()


@dataclass(frozen=True)
class Loop:
    """One long-running loop: ``func`` (dotted path) is called with a Stop."""

    name: str
    func: str

    def target(self) -> Callable[[Stop], Any]:
        return import_string(self.func)


def declared_loops() -> list[Loop]:
    """Every installed app's ``LOOPS``, refusing two with one name."""
    return declared("loops", "LOOPS", Loop)


class SignalStop:
    """A Stop set by a signal handler: SIGTERM or SIGINT to this process (from the
    supervisor, a Ctrl-C to the process group, or a process manager signalling every
    process).

    The handler only sets a flag, and waits look at it every tenth of a second: setting a
    threading.Event there could deadlock, since the handler runs in the main thread, which
    may be inside the same Event's wait holding its lock. Nothing is shared with other
    processes either: a lock shared across processes (such as a multiprocessing Event's)
    stays taken for good when a process dies holding it."""

    def __init__(self) -> None:
        self.signalled = False

    def set(self, *_: object) -> None:
        self.signalled = True

    def is_set(self) -> bool:
        return self.signalled

    def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self.signalled:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.1, left))
        return True


def exit_now(code: int = 0) -> NoReturn:
    """Ends a long-running command's process once everything it started has stopped,
    without the interpreter's teardown: with django-q2, moto and the loops' parents loaded,
    that teardown alone took one to four seconds of a stop on this project's machines.
    For ``run_from_argv`` only (a command run from the command line, not call_command)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_in_child(loop: Loop) -> None:
    """The body of a loop's process: runs the loop until the stop, then exits at once
    (threads a loop leaves behind, such as a driver call still waiting on AWS, hold leases
    that run out by themselves; they must not hold up the stop)."""
    # The process group's Ctrl-C and a SIGTERM sent to every process (systemd) both mean stop.
    stop = SignalStop()
    signal.signal(signal.SIGINT, stop.set)
    signal.signal(signal.SIGTERM, stop.set)
    try:
        import setproctitle  # optional, as for django-q2

        setproctitle.setproctitle(f"qcluster loop {loop.name}")
    except ImportError:
        pass
    code = 0
    try:
        loop.target()(stop)
    except Exception:
        logger.exception("The %s loop failed; the supervisor starts it again.", loop.name)
        code = 1
    finally:
        logging.shutdown()
    os._exit(code)


class Supervisor:
    """Runs each loop in its own forked process, starts again one that dies, and stops them
    all within STOP_TIMEOUT."""

    def __init__(self, loops: list[Loop]) -> None:
        self.context = multiprocessing.get_context("fork")
        self.stopping = False
        self.loops = loops
        self.processes: dict[str, Any] = {}
        self.deaths: dict[str, int] = {}
        self.restart_at: dict[str, float] = {}

    def start(self) -> None:
        for loop in self.loops:
            self._spawn(loop)

    def _spawn(self, loop: Loop) -> None:
        connections.close_all()  # a forked child must not share the parent's connections
        process = self.context.Process(target=_run_in_child, args=(loop,), name=f"loop-{loop.name}")
        process.daemon = True
        process.start()
        self.processes[loop.name] = process
        logger.info("Started the %s loop (pid %s).", loop.name, process.pid)

    def check(self) -> None:
        """Starts again, after a backoff, each loop whose process died."""
        if self.stopping:
            return
        now = time.monotonic()
        for loop in self.loops:
            process = self.processes.get(loop.name)
            if process is not None and process.is_alive():
                continue
            if loop.name not in self.restart_at:
                deaths = self.deaths.get(loop.name, 0)
                self.deaths[loop.name] = deaths + 1
                wait = RESTART_BACKOFF[min(deaths, len(RESTART_BACKOFF) - 1)]
                logger.error(
                    "The %s loop stopped (exit code %s); starting it again in %.0f s.",
                    loop.name,
                    process.exitcode if process is not None else None,
                    wait,
                )
                self.restart_at[loop.name] = now + wait
            if now >= self.restart_at[loop.name]:
                del self.restart_at[loop.name]
                self._spawn(loop)

    def tell_stop(self) -> None:
        """Tells every loop to stop (SIGTERM), without waiting."""
        self.stopping = True
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Tells every loop to stop, waits up to ``timeout`` for all, then kills the rest."""
        self.tell_stop()
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
        for loop_name, process in self.processes.items():
            if process.is_alive():
                logger.error("The %s loop did not stop in %.0f s; killing it.", loop_name, timeout)
                process.kill()
                process.join(1)
