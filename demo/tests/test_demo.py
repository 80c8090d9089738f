"""`manage.py demo` as a newcomer runs it: a real process serving the login page with
working demo users and a demo AWS app that is validated, synced and has its events queue,
which stops every process it started on Ctrl-C (SIGINT)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from access.models import User
from access.permissions import is_admin, is_auditor
from audit.models import AuditEvent
from demo.aws_app import ensure_demo_app
from demo.users import DEMO_PASSWORD, create_demo_users

STARTUP_TIMEOUT = 120
READY = re.compile(r"Portcullis demo is running at (http://127\.0\.0\.1:\d+)/")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, read from /proc (children are in sessions of their own,
    so process groups would not find them)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces and parentheses: split after the last ")".
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left to collect


def wait_for_url(process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        match = READY.search(log.read_text(errors="replace"))
        if match:
            return match.group(1)
        if process.poll() is not None:
            pytest.fail(f"The demo exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"The demo did not start in {STARTUP_TIMEOUT} s:\n{log.read_text()}")


def demo_requests(database: Path) -> dict[str, int]:
    """How many requests of each status the demo's own SQLite database holds."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT status, COUNT(*) FROM access_accessrequest GROUP BY status")
        return dict(rows)


def demo_app_state(database: Path) -> tuple[dict, list[str], list[tuple[str, str]], int]:
    """The demo app, its validations' statuses, its sync runs (kind, status) and its live
    resources, read from the demo's own SQLite database."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        app = dict(
            db.execute(
                "SELECT a.* FROM aws_integration_awsapp a JOIN access_app p "
                "ON p.id = a.app_ptr_id WHERE p.name = 'Demo organization'"
            ).fetchone()
        )
        app_id = app["app_ptr_id"]
        validations = [
            r[0]
            for r in db.execute(
                "SELECT status FROM aws_integration_validation WHERE app_id = ?", (app_id,)
            )
        ]
        runs = [
            (r[0], r[1])
            for r in db.execute(
                "SELECT kind, status FROM aws_integration_syncrun WHERE app_id = ? "
                "AND kind = 'full' ORDER BY id",
                (app_id,),
            )
        ]
        (resources,) = db.execute(
            "SELECT count(*) FROM access_resource WHERE app_id = ? AND deleted_at IS NULL",
            (app_id,),
        ).fetchone()
    return app, validations, runs, resources


def readme_demo_commands() -> list[str]:
    """The README's shell lines that run a demo command."""
    readme = (settings.BASE_DIR / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    commands = [line for line in lines if "manage.py standin_change" in line]
    assert commands, "the README shows no standin_change command"
    return commands


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSO_OIDC_", "AWS_"))}
    env.update(
        DEBUG="true",
        # A database of its own: the demo migrates it and creates its users there.
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        PORTCULLIS_VAR_DIR=str(tmp_path),
        PYTHONUNBUFFERED="1",
        Q_WORKERS="1",
    )
    return env


def test_the_demo_serves_working_logins_and_stops_everything_on_ctrl_c(demo_env, tmp_path):
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "demo",
                "--port",
                "0",
                "--aws-port",
                "0",
                "--idp-port",
                "0",
            ],
            cwd=settings.BASE_DIR,
            env=demo_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the SIGINT below goes to the demo alone, not to pytest
        )
    children: set[int] = set()
    try:
        url = wait_for_url(process, log)
        browser = requests.Session()
        login_page = browser.get(f"{url}/accounts/login/", timeout=10)
        assert login_page.status_code == 200
        assert "<form" in login_page.text and 'name="password"' in login_page.text
        assert "Demo identity provider (SSO)" in login_page.text  # SSO is offered too

        signed_in = browser.post(
            f"{url}/accounts/login/",
            data={
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                "login": "requester@demo.portcullis.test",
                "password": DEMO_PASSWORD,
            },
            headers={"Referer": f"{url}/accounts/login/"},
            timeout=10,
        )
        assert signed_in.status_code == 200
        assert signed_in.url == f"{url}/"
        assert "Welcome, Rob Requester" in signed_in.text

        # Connected as an admin would: a queue, validations passed, the first sync done.
        app, validations, runs, resources = demo_app_state(tmp_path / "demo.sqlite3")
        assert app["sqs_queue_url"].endswith("/portcullis-cloudtrail-events"), app
        assert validations and set(validations) == {"passed"}, validations
        assert runs == [("full", "succeeded")], runs
        assert resources > 50, log.read_text()  # the small seed: ~100 objects
        # Work waits for every persona (demo.portal; its own tests say who finds what).
        assert demo_requests(tmp_path / "demo.sqlite3") == {
            "pending": 3,
            "approved": 1,
            "denied": 1,
        }, log.read_text()
        # Each command the banner prints works as pasted into a fresh shell (no DEBUG, no
        # database, no stand-in address, no secrets set), from anywhere.
        printed = [
            line.strip()
            for line in log.read_text().splitlines()
            if " standin_change " in line and "manage.py" in line
        ]
        assert len(printed) == 4, log.read_text()
        assert any(line.endswith("standin_change run-instance") for line in printed)
        fresh = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
        for command in printed:
            pasted = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env=fresh,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert pasted.returncode == 0, (command, pasted.stdout, pasted.stderr)
        assert "terminate-instance" in pasted.stdout  # the last: --help
        # So does the README's, from the checkout (its var/ is this demo's PORTCULLIS_VAR_DIR).
        for command in readme_demo_commands():
            pasted = subprocess.run(
                ["bash", "-c", command],
                cwd=settings.BASE_DIR,
                env={**fresh, "PORTCULLIS_VAR_DIR": str(tmp_path)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert pasted.returncode == 0, (command, pasted.stdout, pasted.stderr)

        children = descendants(process.pid)
        # The web server, the task cluster and the cluster's own processes.
        assert len(children) >= 3, log.read_text()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=40) == 0, log.read_text()
    finally:
        if process.poll() is None:  # the test failed: leave nothing behind
            for pid in children | descendants(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.kill()
            process.wait()
    text = log.read_text()
    assert "Stopped." in text
    assert not (tmp_path / "demo.env").exists()  # the commands no longer find a demo
    still_running = [pid for pid in children if running(pid)]
    assert still_running == [], text


@pytest.mark.django_db
def test_demo_users_get_their_roles_and_manager_and_each_creation_is_audited():
    created = create_demo_users()
    users = {demo.person.key: demo.user for demo in created}
    assert set(users) == {"admin", "requester", "approver", "manager", "auditor", "outsider"}
    assert all(demo.created for demo in created)
    assert users["admin"].email == "admin@demo.portcullis.test"
    assert is_admin(users["admin"]) and not is_auditor(users["admin"])
    assert is_auditor(users["auditor"]) and not is_admin(users["auditor"])
    assert users["requester"].manager == users["manager"]
    assert not any(is_admin(users[k]) or is_auditor(users[k]) for k in ("requester", "outsider"))
    assert all(User.objects.get(pk=u.pk).check_password(DEMO_PASSWORD) for u in users.values())

    events = list(AuditEvent.objects.order_by("id").values_list("action", "target_id"))
    assert events.count(("user.created", str(users["requester"].pk))) == 1
    assert [a for a, _ in events].count("user.created") == 6
    assert ("role.granted", str(users["admin"].pk)) in events
    assert ("role.granted", str(users["auditor"].pk)) in events
    assert AuditEvent.objects.filter(action="role.granted").count() == 2


@pytest.mark.django_db
def test_demo_users_are_brought_back_in_line_and_a_second_run_changes_nothing():
    create_demo_users()
    requester = User.objects.get(email="requester@demo.portcullis.test")
    requester.set_password("something-else-entirely")
    requester.manager = None
    requester.save()
    before = AuditEvent.objects.count()

    again = create_demo_users()
    assert not any(demo.created for demo in again)
    requester.refresh_from_db()
    assert requester.check_password(DEMO_PASSWORD)
    assert requester.manager.email == "manager@demo.portcullis.test"  # type: ignore[attr-defined]  # reloaded
    new = list(AuditEvent.objects.order_by("id")[before:])
    assert [(e.action, e.target_id) for e in new] == [
        ("user.updated", str(requester.pk)),
        ("user.password_set", str(requester.pk)),
    ]
    assert new[1].details == {"reason": "demo users reset"}  # never the password itself

    settled = AuditEvent.objects.count()
    create_demo_users()
    assert AuditEvent.objects.count() == settled


@pytest.mark.django_db
def test_the_demo_app_is_created_once_and_audited():
    app, created = ensure_demo_app("stand-in")
    again, created_again = ensure_demo_app("stand-in")
    assert created and not created_again and again == app
    assert app.name == "Demo organization"
    assert list(AuditEvent.objects.values_list("action", "target_id")) == [
        ("inventory.app.created", str(app.pk))
    ]
