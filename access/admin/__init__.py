"""The admin for the access app: users, inventory, rules, grants, requests and assignments
(Admin role only)."""

from access.admin import (  # noqa: F401  (registers the ModelAdmins)
    accounts,
    assignments,
    grants,
    inventory,
    requests,
    users,
)
