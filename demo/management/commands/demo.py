"""`manage.py demo`: everything Portcullis needs, offline, in the foreground.

Starts the stand-in AWS (moto server, seeded with a small organization) and the test
identity provider on threads of this process, creates the demo users and the demo AWS app
(with the AWS settings' OIDC client pointed at the test identity provider, and an SQS
events queue in the stand-in's management account, which `manage.py standin_change`
feeds), runs its validations and a first full sync (inline: a few seconds), seeds the portal
with work waiting for each demo persona (demo.portal), then runs the task cluster (`qcluster`) and the web server (`runserver`) as child
processes pointed at the stand-ins. Ctrl-C or SIGTERM stops every process and thread it
started: children get SIGTERM at once, then SIGKILL (their whole process group) after
STOP_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from access.models import Resource
from aws_integration.choices import ValidationStatus
from config import running_demo
from config.loops import SignalStop, exit_now
from demo import seed, standin
from demo.aws_app import (
    DEMO_QUEUE_NAME,
    assign_demo_owners,
    configure_demo_oidc,
    create_demo_queue,
    ensure_demo_aws_app,
    validate_and_sync,
)
from demo.portal import seed_portal
from demo.users import DEMO_PASSWORD, DEMO_PEOPLE, create_demo_users, refuse_unless_debug

SSO_CLIENT_ID = "portcullis-demo"
SSO_CLIENT_SECRET = "demo"
SSO_NAME = "Demo identity provider (SSO)"
HOST = "127.0.0.1"
STOP_TIMEOUT = 2.0  # the whole stop stays under 3 s
LOGIN_PATH = "/accounts/login/"
# The stand-in changes the banner prints, each to be pasted as it stands.
PRINTED_CHANGES = (
    "run-instance",
    "create-role --name demo-analyst",
    "add-group-member --group Data --user requester@demo.portcullis.test",
    "--help",
)


class _Interrupted(BaseException):
    """Raised by the signal handler during the long start-up steps (migrate, seeding).

    A BaseException, like KeyboardInterrupt, so that libraries catching Exception (botocore
    retries on any Exception while sending) let it through."""


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]


@dataclass
class _Demo:
    """What the demo started, so that stopping can undo exactly that."""

    moto: standin.MotoServer | None = None
    idp: standin.IdpServer | None = None
    children: list[_Child] = field(default_factory=list)
    wrote_env: bool = False


class Command(BaseCommand):
    help = (
        "Runs the demo: the stand-in AWS seeded with a small organization, the test identity "
        "provider, demo users for each role, the task cluster and the web server. Runs until "
        "Ctrl-C, then stops everything it started."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, default=8000, help="Web server port (0: any free port)."
        )
        parser.add_argument(
            "--aws-port", type=int, default=5001, help="Stand-in AWS port (0: any free port)."
        )
        parser.add_argument(
            "--idp-port",
            type=int,
            default=5002,
            help="Test identity provider port (0: any free port).",
        )
        parser.add_argument(
            "--no-web",
            action="store_true",
            help="Start the stand-ins and the demo users only, not the task cluster and web "
            "server (run those yourself with the printed environment).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Start everything, check that the login page answers, stop and exit.",
        )
        parser.add_argument(
            "--startup-timeout",
            type=float,
            default=90.0,
            help="Seconds to wait for the web server to answer (default: %(default)s).",
        )

    def run_from_argv(self, argv: list[str]) -> None:
        """From the command line (``make demo``): once everything has stopped, the process
        ends without the interpreter's teardown, so that a Ctrl-C is done within 3 s."""
        super().run_from_argv(argv)
        exit_now()

    def handle(self, *args: Any, **options: Any) -> None:
        refuse_unless_debug("demo")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the stand-ins' request lines
        # Set by the signal handler: a flag, never a threading.Event (see SignalStop).
        self._stop = SignalStop()
        self._interruptible = False
        self._started_at = time.monotonic()
        demo = _Demo()
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self._start(demo, options)
            if options["check"]:
                self.stdout.write("Check passed: the login page answers. Stopping.")
            else:
                self.stdout.write("Press Ctrl-C to stop everything.")
                self._wait(demo)
        except _Interrupted:
            self.stdout.write("Interrupted while starting.")
        finally:
            self._interruptible = False
            self._shutdown(demo)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Stopped.")

    # Starting -----------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()
        # Only steps that start nothing are cut short at once; elsewhere the flag is
        # checked between steps, so every server and child started is known to _shutdown.
        if self._interruptible:
            self._interruptible = False  # raise once; the cleanup must not be interrupted
            raise _Interrupted

    def _checkpoint(self) -> None:
        if self._stop.is_set():
            raise _Interrupted

    def _interruptibly(self, step: Any) -> Any:
        self._checkpoint()
        self._interruptible = True
        try:
            return step()
        finally:
            self._interruptible = False

    def _start(self, demo: _Demo, options: dict[str, Any]) -> None:
        self.stdout.write("Preparing the database (migrate)...")
        self._interruptibly(lambda: call_command("migrate", interactive=False, verbosity=0))

        self._checkpoint()
        demo.moto = self._run_step(lambda: standin.start_moto(HOST, options["aws_port"]))
        settings.AWS_ENDPOINT_URL = demo.moto.url
        self.stdout.write(f"Stand-in AWS listening at {demo.moto.url}; seeding it...")
        people = [
            seed.Person(p.email, p.first_name, p.last_name, groups=p.idc_groups)
            for p in DEMO_PEOPLE
        ]
        result = self._run_step(
            lambda: self._interruptibly(
                lambda: seed.seed_organization(seed.SMALL, people=people, progress=self._say)
            )
        )

        self._checkpoint()
        demo.idp = self._run_step(
            lambda: standin.start_idp(
                options["idp_port"],
                users=[
                    standin.IdpUser(sub=p.sso_subject, email=p.email, name=p.full_name)
                    for p in DEMO_PEOPLE
                ],
            )
        )
        self.stdout.write(f"Test identity provider listening at {demo.idp.url}")

        port = options["port"] or _free_port()
        url = f"http://{HOST}:{port}"
        env = self._child_env(demo, result, url)
        # Anything this process does or starts from now on (the first sync, the children)
        # reaches the stand-ins, with the stand-in's credentials.
        os.environ.update(env)
        # Settings were read before the port was known: the seeded requests' emails link to
        # the portal where it runs.
        settings.SITE_URL = url

        self._checkpoint()
        demo_users = create_demo_users()
        queue_url = self._run_step(lambda: create_demo_queue(result))
        app, _ = ensure_demo_aws_app(
            result,
            description=(
                f"The demo's stand-in organization {result.organization_id} (management "
                f"account {result.management_account_id}, Identity Center "
                f"{result.instance_arn}) at {demo.moto.url}."
            ),
            sqs_queue_url=queue_url,
        )
        configure_demo_oidc(demo.idp.url, SSO_CLIENT_ID, SSO_CLIENT_SECRET)

        self._checkpoint()
        self.stdout.write("Validating the demo app and running its first full sync...")
        # Not cut short by Ctrl-C: an interrupted sync would stay "running" in the database.
        validations, run = validate_and_sync(app)
        failed = [v.name for v in validations if v.status == ValidationStatus.FAILED]
        passed = sum(v.status == ValidationStatus.PASSED for v in validations)
        self._say(
            f"Validations: {passed} passed"
            + (f", {len(failed)} failed ({'; '.join(failed)})" if failed else "")
        )
        held = Resource.objects.filter(app=app, deleted_at__isnull=True).count()
        owner = next(p for p in DEMO_PEOPLE if p.key == "approver")
        owned = assign_demo_owners(app, owner.email, issuer_url=demo.idp.url)
        if owned:
            self._say(f"{owner.full_name} now owns {owned} databases and groups of the demo.")
        # Work waiting for each persona: requests, a manager-stage rule (once per database).
        for line in seed_portal(app):
            self._say(line)
        self._say(
            f"First sync: {run.status}; the inventory holds {held} resources. {run.message}".rstrip()
        )
        self._app_pages = (
            reverse("admin:aws_integration_awsapp_change", args=[app.pk]),
            reverse("admin:aws_integration_awsapp_sync_runs", args=[app.pk]),
        )

        if not options["no_web"]:
            self._checkpoint()
            self._start_children(demo, env, port)
            self._wait_until_serving(demo, url, options["startup_timeout"])
        running_demo.write(settings.VAR_DIR, self._printed_commands_env(env))
        demo.wrote_env = True
        self._print_banner(demo, result, url, web=not options["no_web"], users=demo_users, env=env)
        if options["check"] and not options["no_web"]:
            self._check_login_page(url)

    def _run_step(self, step: Any) -> Any:
        try:
            return step()
        except (standin.StandInError, seed.SeedError) as exc:
            raise CommandError(str(exc)) from exc

    def _say(self, message: str) -> None:
        self.stdout.write(f"  {message}")

    def _child_env(self, demo: _Demo, result: seed.SeedResult, url: str) -> dict[str, str]:
        assert demo.moto is not None and demo.idp is not None
        env = {
            "DEBUG": "true",
            "PYTHONUNBUFFERED": "1",
            "SITE_URL": url,
            "AWS_ENDPOINT_URL": demo.moto.url,
            "AWS_ACCESS_KEY_ID": seed.STANDIN_CREDENTIALS["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": seed.STANDIN_CREDENTIALS["SecretAccessKey"],
            "AWS_SESSION_TOKEN": seed.STANDIN_CREDENTIALS["SessionToken"],
            "AWS_DEFAULT_REGION": result.region,
            "SSO_OIDC_ISSUER": demo.idp.url,
            "SSO_OIDC_CLIENT_ID": SSO_CLIENT_ID,
            "SSO_OIDC_CLIENT_SECRET": SSO_CLIENT_SECRET,
            "SSO_OIDC_NAME": os.environ.get("SSO_OIDC_NAME", SSO_NAME),
            "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        }
        return env

    def _printed_commands_env(self, env: dict[str, str]) -> dict[str, str]:
        """What the printed commands need (config.running_demo): the children's
        environment, and the demo's own database and var directory when they are set."""
        own = {
            key: os.environ[key]
            for key in ("DATABASE_URL", "PORTCULLIS_VAR_DIR")
            if os.environ.get(key)
        }
        return {**env, **own}

    def _start_children(self, demo: _Demo, env: dict[str, str], port: int) -> None:
        manage = str(settings.BASE_DIR / "manage.py")
        commands = {
            "task cluster": [sys.executable, manage, "qcluster"],
            # The demo already ran the system checks; --noreload keeps one process to stop.
            "web server": [
                sys.executable,
                manage,
                "runserver",
                f"{HOST}:{port}",
                "--noreload",
                "--skip-checks",
            ],
        }
        for name, command in commands.items():
            # A session of its own: Ctrl-C reaches only this process, which then stops
            # each child, and a child's helpers die with its process group.
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and manage.py)
                command,
                cwd=settings.BASE_DIR,
                env={**os.environ, **env},
                start_new_session=True,
            )
            demo.children.append(_Child(name, process))
            self.stdout.write(f"Started the {name} (pid {process.pid})")

    def _wait_until_serving(self, demo: _Demo, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._raise_if_a_child_died(demo)
            try:
                if requests.get(url + LOGIN_PATH, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self._stop.wait(0.25):
                raise _Interrupted
        raise CommandError(
            f"The web server did not answer at {url}{LOGIN_PATH} in {timeout:.0f} s."
        )

    def _check_login_page(self, url: str) -> None:
        page = requests.get(url + LOGIN_PATH, timeout=10)
        if page.status_code != 200 or 'name="password"' not in page.text:
            raise CommandError(
                f"{url}{LOGIN_PATH} answered {page.status_code} without a login form."
            )

    def _print_banner(
        self,
        demo: _Demo,
        result: seed.SeedResult,
        url: str,
        *,
        web: bool,
        users: list[Any],
        env: dict[str, str],
    ) -> None:
        assert demo.moto is not None and demo.idp is not None
        w = self.stdout.write
        w("")
        took = f"(started in {time.monotonic() - self._started_at:.0f} s)"
        if web:
            w(self.style.SUCCESS(f"Portcullis demo is running at {url}/ {took}"))
        else:
            w(self.style.SUCCESS("Portcullis demo stand-ins are running (no web server)."))
            w("Run the web server and task cluster yourself with this environment:")
            w("  " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()))
        w(
            f"  Stand-in AWS       {demo.moto.url}  (organization {result.organization_id}, "
            f"{len(result.accounts)} accounts, {len(result.users)} Identity Center users)"
        )
        w(f"  Identity provider  {demo.idp.url}  (client id {SSO_CLIENT_ID})")
        w(f"  Events queue       {DEMO_QUEUE_NAME}  (polled by the task cluster)")
        w("")
        w("  Try it:")
        app_page, runs_page = self._app_pages
        w(
            "  - Sign in as each person below: something waits for each of them. The manager "
            "and the\n    approver find a request in Approvals (the manager's is stage 1 of "
            "a sensitive database's\n    rule, the approver decides stage 2), the admin one "
            "that has no owner; the requester holds\n    access to give up on My access, with "
            "requests pending on My requests; the auditor reads\n    the decisions, a denial "
            f"with its reason among them, in the audit log: {url}{reverse('audit:event-list')}"
        )
        w(f"  - Sign in as the admin and open the demo app: {url}{app_page}")
        w('    (its validations, "Refresh validations", and "Sync now" for another full sync);')
        w(f"    its sync runs: {url}{runs_page}")
        # The commands take the rest of the demo's environment from the file it wrote
        # (config.running_demo), found through the var directory when that is not var/.
        var_dir = (
            f"PORTCULLIS_VAR_DIR={shlex.quote(os.environ['PORTCULLIS_VAR_DIR'])} "
            if os.environ.get("PORTCULLIS_VAR_DIR")
            else ""
        )
        manage = f"{var_dir}{sys.executable} {settings.BASE_DIR / 'manage.py'}"
        w(
            "  - Make a change in the stand-in AWS; its CloudTrail event arrives through the "
            'queue within a minute\n    (a new "events" sync run, and the inventory row),'
            "\n    from any terminal while the demo runs; --help lists the other changes:"
        )
        for command in PRINTED_CHANGES:
            w(f"      {manage} standin_change {command}")
        w("")
        w(f"  {'Email':<34} {'Role':<28} Password")
        for demo_user in users:
            person = demo_user.person
            w(f"  {person.email:<34} {person.role_label:<28} {DEMO_PASSWORD}")
        w(
            f'  Or choose "{os.environ.get("SSO_OIDC_NAME", SSO_NAME)}" on the login page '
            "and pick the same person (demo-<role>) at the identity provider."
        )
        w("")

    # Running and stopping ------------------------------------------------------------

    def _wait(self, demo: _Demo) -> None:
        while not self._stop.wait(0.5):
            self._raise_if_a_child_died(demo)

    def _raise_if_a_child_died(self, demo: _Demo) -> None:
        for child in demo.children:
            code = child.process.poll()
            if code is not None:
                raise CommandError(
                    f"The {child.name} (pid {child.process.pid}) exited with code {code}; "
                    "stopping the demo. Its output above says why."
                )

    def _shutdown(self, demo: _Demo) -> None:
        if demo.wrote_env:
            running_demo.remove(settings.VAR_DIR)
        _stop_processes(demo.children, self.stdout.write)
        if demo.idp is not None:
            demo.idp.stop()
        if demo.moto is not None:
            demo.moto.stop()


def _stop_processes(children: list[_Child], say: Any) -> None:
    """SIGTERM to every child at once (the task cluster's loops release their leases within
    a second), then, after STOP_TIMEOUT in all, SIGKILL to whatever is left of their process
    groups (a worker busy with a sync: the demo does not wait for it)."""
    running = [child for child in children if child.process.poll() is None]
    for child in running:
        say(f"Stopping the {child.name} (pid {child.process.pid})...")
        child.process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in running:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"The {child.name} did not stop in {STOP_TIMEOUT:.0f} s; killing it.")
            _kill_group(child.process.pid)
            child.process.wait()
    for child in children:
        # Whatever it left behind in its process group (the cluster's workers) goes too.
        _kill_group(child.process.pid)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])
