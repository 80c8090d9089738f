"""Usernames for users known by their email (the admin's add form, the user import, the
demo)."""

from __future__ import annotations

import re

from access.models import User

_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")


def default_username(email: str, *, exclude_pk: int | None = None) -> str:
    """A free username for a user with this email: the part before the @, or the whole
    email when another user already has that name."""
    email = email.strip().lower()
    local = _USERNAME_UNSAFE.sub("_", email.split("@", 1)[0]) or "user"
    taken = User.objects.exclude(pk=exclude_pk) if exclude_pk else User.objects.all()
    for candidate in (local, _USERNAME_UNSAFE.sub("_", email)):
        if candidate and not taken.filter(username__iexact=candidate).exists():
            return candidate[:150]
    suffix = 2
    while taken.filter(username__iexact=f"{local}{suffix}").exists():
        suffix += 1
    return f"{local}{suffix}"[:150]
