"""`create_demo_users` and `demo` make an Admin with a known password: development only."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from access.models import User
from access.permissions import ADMIN_ROLE
from demo.users import DEMO_DOMAIN

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("command", ["create_demo_users", "demo"])
def test_it_refuses_to_create_demo_users_when_debug_is_off(settings, command):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="only with DEBUG=true"):
        call_command(command)

    assert not User.objects.filter(email__endswith=f"@{DEMO_DOMAIN}").exists()


def test_it_creates_the_demo_users_when_debug_is_on(settings, capsys):
    settings.DEBUG = True

    call_command("create_demo_users")

    admin = User.objects.get(email=f"admin@{DEMO_DOMAIN}")
    assert admin.groups.filter(name=ADMIN_ROLE).exists()
    assert "Password for every demo user" in capsys.readouterr().out
