"""Keeps the permissions of the Admin and Auditor roles in step with the installed models.

The migration ``access/0002_roles`` creates the two groups; this handler runs after every
``migrate`` (``post_migrate``) and gives Admin every permission of the project's apps and
of auth, and Auditor their view permissions, so models added later get them too.
Authorization itself is decided in ``access.permissions`` by role name: these Django
permissions describe the roles, for the admin and for anyone reading the database.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS

from access.permissions import ADMIN_ROLE, AUDITOR_ROLE

PROJECT_APPS = ("access", "audit", "aws_integration", "reviews", "django_q")
ADMIN_EXTRA_APPS = ("auth",)


def sync_role_permissions(
    sender: Any = None, *, using: str = DEFAULT_DB_ALIAS, apps: Any = None, **kwargs: Any
) -> None:
    """Creates the role groups if missing and sets their permissions; safe to run any time."""
    apps = apps or global_apps
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:  # auth is not installed in this state: nothing to do.
        return
    permissions = Permission.objects.using(using)
    admin, _ = Group.objects.using(using).get_or_create(name=ADMIN_ROLE)
    admin.permissions.set(
        permissions.filter(content_type__app_label__in=PROJECT_APPS + ADMIN_EXTRA_APPS)
    )
    auditor, _ = Group.objects.using(using).get_or_create(name=AUDITOR_ROLE)
    auditor.permissions.set(
        permissions.filter(content_type__app_label__in=PROJECT_APPS, codename__startswith="view_")
    )
