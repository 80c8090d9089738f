"""The demo's people: one portal user for each role, created or brought back in line
idempotently, with every change recorded in the audit log (actor: the system)."""

from __future__ import annotations

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.management.base import CommandError
from django.db import transaction

from access.models import User
from access.permissions import ADMIN_ROLE, AUDITOR_ROLE
from access.services.change_log import record_created, record_updated, snapshot
from access.services.roles import set_user_roles
from access.services.usernames import default_username
from audit.services import record_event

DEMO_DOMAIN = "demo.portcullis.test"
# One shared password, printed by `manage.py demo`; the demo runs on 127.0.0.1 only.
DEMO_PASSWORD = "portcullis-demo"


@dataclass(frozen=True)
class DemoPerson:
    """A demo user: who they are, their roles, and (by key) their manager."""

    key: str
    first_name: str
    last_name: str
    role_label: str
    roles: tuple[str, ...] = ()
    manager: str = ""
    title: str = ""
    # Identity Center groups the same person belongs to in the seeded organization.
    idc_groups: tuple[str, ...] = ()

    @property
    def email(self) -> str:
        return f"{self.key}@{DEMO_DOMAIN}"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def sso_subject(self) -> str:
        # The subject the demo identity provider signs them in as.
        return f"demo-{self.key}"


# Managers come first: the requester's manager must exist when the requester is made.
DEMO_PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson(
        "admin", "Ada", "Admin", "Admin", roles=(ADMIN_ROLE,), title="Cloud platform lead",
        idc_groups=("Engineering",),
    ),
    DemoPerson("manager", "Mia", "Manager", "Manager", title="Engineering manager"),
    DemoPerson(
        "requester", "Rob", "Requester", "Requester", manager="manager",
        title="Software engineer", idc_groups=("Engineering",),
    ),
    DemoPerson(
        "approver", "Olga", "Owner", "Approver (resource owner)", title="Database owner",
        idc_groups=("Data",),
    ),
    DemoPerson("auditor", "Aud", "Auditor", "Auditor", roles=(AUDITOR_ROLE,), title="Auditor"),
    DemoPerson("outsider", "Otto", "Outsider", "Outsider (no access)", title="Contractor"),
)  # fmt: skip


def refuse_unless_debug(command: str) -> None:
    """The demo users include an Admin whose password is printed in the README: they may
    exist only on a development machine, which is what DEBUG says."""
    if not settings.DEBUG:
        raise CommandError(
            f"{command} creates an Admin with the shared demo password, so it runs only "
            "with DEBUG=true (a development machine). This installation has DEBUG off: "
            "create real users in the admin (one by one, or by importing a CSV of users)."
        )


@dataclass(frozen=True)
class DemoUser:
    """A demo person and their portal user."""

    person: DemoPerson
    user: User
    created: bool


def create_demo_users(password: str = DEMO_PASSWORD) -> list[DemoUser]:
    """Creates the demo users, or brings existing ones back to their roles, manager and the
    demo password. Running it again changes (and records) nothing."""
    result: list[DemoUser] = []
    by_key: dict[str, User] = {}
    # Hashing is slow on purpose; new demo users share one hash of the shared password.
    encoded = make_password(password)
    with transaction.atomic():
        for person in DEMO_PEOPLE:
            user, created = _ensure_user(
                person, password, encoded, manager=by_key.get(person.manager)
            )
            # A verified address lets the demo SSO login link to this account and keep
            # its password (allauth disables the password when linking an unverified one).
            EmailAddress.objects.update_or_create(
                user=user, email=user.email, defaults={"verified": True, "primary": True}
            )
            set_user_roles(user, person.roles, actor=None)
            by_key[person.key] = user
            result.append(DemoUser(person=person, user=user, created=created))
    return result


def _ensure_user(
    person: DemoPerson, password: str, encoded: str, *, manager: User | None
) -> tuple[User, bool]:
    wanted = {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "title": person.title,
        "manager_id": manager.pk if manager else None,
        "is_active": True,
    }
    user = User.objects.filter(email__iexact=person.email).first()
    if user is None:
        user = User(username=default_username(person.email), email=person.email, **wanted)
        user.password = encoded
        user.full_clean()
        user.save()
        record_created(user, actor=None, after=snapshot(user))
        return user, True

    before = snapshot(user)
    for field, value in wanted.items():
        setattr(user, field, value)
    password_reset = not user.check_password(password)
    if password_reset:
        user.password = encoded
    user.save()
    record_updated(user, actor=None, before=before, after=snapshot(user))
    if password_reset:
        # The password is never copied into the log; that it was set is.
        record_event("user.password_set", target=user, details={"reason": "demo users reset"})
    return user, False
