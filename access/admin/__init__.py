"""The admin for the access app: users, inventory, rules and grants (Admin role only)."""

from access.admin import grants, inventory, users  # noqa: F401  (registers the ModelAdmins)
