"""Every authorization rule, in one place: pages, API and admin all ask here.

Roles are Django groups (Admin, Auditor). Approvers are a resource's owners;
managers come from ``User.manager``; group admins from ``UserGroup.admins``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeGuard

from django.core.exceptions import PermissionDenied
from django.db.models import Q

if TYPE_CHECKING:
    from access.models import AccessRequest, AnyUser, ApiToken, Grant, Resource, User

ADMIN_ROLE = "Admin"
AUDITOR_ROLE = "Auditor"
ROLES = (ADMIN_ROLE, AUDITOR_ROLE)


def _active(user: AnyUser) -> TypeGuard[User]:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def role_names(user: User) -> frozenset[str]:
    """The role names an account holds, active or not, read from the database now (admin
    lists, imports and role changes need this; checks use the cached ``roles_of``)."""
    return frozenset(user.groups.filter(name__in=ROLES).values_list("name", flat=True))


def roles_of(user: AnyUser) -> frozenset[str]:
    """The role names that count for an active user, cached on the user object for the
    request; none for anonymous or deactivated users."""
    if not _active(user):
        return frozenset()
    cached = getattr(user, "_portcullis_roles", None)
    if cached is None:
        cached = role_names(user)
        user._portcullis_roles = cached  # type: ignore[attr-defined]  # a per-request cache
    return cached


def is_admin(user: AnyUser) -> bool:
    return _active(user) and (user.is_superuser or ADMIN_ROLE in roles_of(user))


def is_auditor(user: AnyUser) -> bool:
    return _active(user) and AUDITOR_ROLE in roles_of(user)


def can_use_admin_site(user: AnyUser) -> bool:
    return is_admin(user)


def can_view_audit_log(user: AnyUser) -> bool:
    return is_admin(user) or is_auditor(user)


def can_use_api(user: AnyUser) -> bool:
    return _active(user)


def is_owner(user: AnyUser, resource: Resource) -> bool:
    if not _active(user):
        return False
    return resource.owners.filter(Q(user=user) | Q(group__members=user)).exists()


def is_manager_of(user: AnyUser, other: User) -> bool:
    return _active(user) and other.manager_id == user.pk


def can_view_resource_holders(user: AnyUser, resource: Resource) -> bool:
    """Who holds access to a resource is shown to its owners, admins and auditors."""
    return is_admin(user) or is_auditor(user) or is_owner(user, resource)


def can_view_grants_of(user: AnyUser, other: User) -> bool:
    """Whose list of grants a user may read: their own, their reports', or anyone's for
    admins and auditors (the same people ``Grant.objects.visible_to`` lets read a single grant)."""
    if is_admin(user) or is_auditor(user):
        return True
    return _active(user) and (other.pk == user.pk or is_manager_of(user, other))


def can_revoke_api_token(user: AnyUser, token: ApiToken) -> bool:
    """A token is revoked by its holder, or by an admin (for example when a laptop is lost)."""
    return is_admin(user) or (_active(user) and token.user_id == user.pk)


# Requests and grants --------------------------------------------------------------------------
def can_request_for(user: AnyUser, other: User, resource: Resource) -> bool:
    """Asking for access on someone else's behalf: admins, the resource's owners, and the
    person's manager."""
    if not _active(user):
        return False
    if other.pk == user.pk:
        return True
    return is_admin(user) or is_owner(user, resource) or is_manager_of(user, other)


def can_request_for_anyone(user: AnyUser, resource: Resource) -> bool:
    """Admins and a resource's owners may ask for it on behalf of anyone (managers only for
    their reports: ``can_request_for``)."""
    return is_admin(user) or is_owner(user, resource)


def can_revoke_grants_of(user: AnyUser, resource: Resource) -> bool:
    """Admins and a resource's owners revoke anyone's grants of it."""
    return is_admin(user) or is_owner(user, resource)


def can_view_request(user: AnyUser, request: AccessRequest) -> bool:
    if is_admin(user) or is_auditor(user):
        return True
    if not _active(user):
        return False
    return (
        user.pk in (request.user_id, request.requested_by_id)
        or user.pk in request.reviewer_ids
        or request.approvals.filter(reviewer=user).exists()
        or is_owner(user, request.resource)
        or is_manager_of(user, request.user)
    )


def can_cancel_request(user: AnyUser, request: AccessRequest) -> bool:
    """The person who asked (or the person it is for) cancels; admins too."""
    return is_admin(user) or (
        _active(user) and user.pk in (request.user_id, request.requested_by_id)
    )


def can_revoke_grant(user: AnyUser, grant: Grant) -> bool:
    """Owners and admins revoke any grant of their resources; holders give up their own."""
    if not _active(user):
        return False
    return grant.user_id == user.pk or can_revoke_grants_of(user, grant.resource)


def can_extend_grant(user: AnyUser, grant: Grant) -> bool:
    if not _active(user):
        return False
    return grant.user_id == user.pk or can_request_for(user, grant.user, grant.resource)


def can_manage_rules(user: AnyUser, resource: Resource) -> bool:
    """Request rules of a resource are set by admins and by the resource's owners."""
    return is_admin(user) or is_owner(user, resource)


def can_relax_rules(user: AnyUser) -> bool:
    """Turning on auto-approval, self-approval, access until revoked, no maximum duration or
    automatic extensions is for admins: owners who could would approve their own access."""
    return is_admin(user)


def is_signed_in(user: AnyUser) -> TypeGuard[User]:
    """Whether ``user`` is a person signed in: not anonymous, not the system (None)."""
    return user is not None and user.is_authenticated


def signed_in(user: AnyUser) -> User:
    """The person behind a request that authentication let through (``login_required``,
    DRF's ``IsAuthenticated``); anonymous never gets this far."""
    if not is_signed_in(user):
        raise PermissionDenied("Sign in first.")
    return user
