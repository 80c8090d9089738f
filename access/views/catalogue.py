"""The catalogue (every resource a user may ask for, searched and filtered) and one
resource's page.

The catalogue pages by (name, id) keyset, never by page number: it has as many rows as
the organization has resources (100,000 and more), and a page costs the same queries
and no COUNT(*) wherever it is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from access import permissions
from access.choices import ResourceType
from access.models import AccessLevel, AccessRequest, Grant, Resource
from access.services import grants as grant_service
from access.services.requests import rule_for
from access.views.common import int_or_none, render_page

PAGE_SIZE = 50
# Holders shown on a resource's page; past this the page says there are more.
HOLDERS_SHOWN = 200
MINE_SHOWN = 20


@dataclass
class CatalogueQuery:
    q: str = ""
    type: str = ""
    account: str = ""
    ou: int | None = None
    region: str = ""
    after: int | None = None
    before: int | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> tuple[CatalogueQuery, list[str]]:
        get = request.GET
        errors: list[str] = []
        query = cls(
            q=get.get("q", "").strip()[:200],
            type=get.get("type", "").strip(),
            account=get.get("account", "").strip(),
            region=get.get("region", "").strip()[:32],
        )
        if query.type and query.type not in ResourceType.values:
            errors.append(f"Unknown resource type {query.type[:40]!r}; choose one from the list.")
        if query.account and not (query.account.isascii() and query.account.isdigit()):
            errors.append("An account is a 12-digit AWS account id; choose one from the list.")
        for name in ("ou", "after", "before"):
            raw = get.get(name, "").strip()
            if not raw:
                continue
            value = int_or_none(raw)
            if value is None:
                errors.append(f"'{name}' must be a resource number, not {raw[:40]!r}.")
            setattr(query, name, value)
        return query, errors


def accounts_below(ou_pk: int) -> set[str]:
    """The account ids of every account below an OU, however deep, computed from the OU
    tree in memory (OUs and accounts are few next to the resources in them)."""
    children: dict[int | None, list[tuple[int, str, str]]] = defaultdict(list)
    rows = (
        Resource.objects.live()
        .filter(type__in=[ResourceType.ORGANIZATIONAL_UNIT, ResourceType.ACCOUNT])
        .values_list("pk", "parent_id", "type", "account_id", "remote_id")
    )
    for pk, parent_id, type_, account_id, remote_id in rows:
        children[parent_id].append((pk, type_, account_id or remote_id))
    found: set[str] = set()
    stack, seen = [ou_pk], {ou_pk}
    while stack:
        for pk, type_, account_id in children.get(stack.pop(), []):
            if type_ == ResourceType.ACCOUNT:
                found.add(account_id)
            elif pk not in seen:
                seen.add(pk)
                stack.append(pk)
    return found


def search(queryset: QuerySet[Resource], query: CatalogueQuery) -> QuerySet[Resource]:
    if query.q:
        # Tags are a JSON object; its text holds every key and value.
        queryset = queryset.annotate(tags_text=Cast("tags", TextField())).filter(
            Q(name__icontains=query.q) | Q(arn__icontains=query.q) | Q(tags_text__icontains=query.q)
        )
    if query.type:
        queryset = queryset.filter(type=query.type)
    if query.account:
        queryset = queryset.filter(account_id=query.account)
    if query.region:
        queryset = queryset.filter(region=query.region)
    if query.ou is not None:
        queryset = queryset.filter(account_id__in=sorted(accounts_below(query.ou)))
    return queryset


def _live_levels() -> Prefetch:
    return Prefetch(
        "access_levels",
        queryset=AccessLevel.objects.filter(deleted_at__isnull=True).order_by("name"),
        to_attr="live_levels",
    )


@login_required
@require_GET
def catalogue(request: HttpRequest) -> HttpResponse:
    query, errors = CatalogueQuery.from_request(request)
    visible = Resource.objects.visible_to(request.user).live()
    resources: list[Resource] = []
    next_after = previous_before = None
    if not errors:
        queryset = search(visible, query).select_related("app").prefetch_related(_live_levels())
        cursor_pk = query.after or query.before
        cursor = visible.filter(pk=cursor_pk).values("name", "pk").first() if cursor_pk else None
        if cursor_pk and cursor is None:
            errors.append("That page no longer exists; go back to the first page.")
        elif query.before is not None and cursor is not None:
            earlier = Q(name__lt=cursor["name"]) | Q(name=cursor["name"], pk__lt=cursor["pk"])
            rows = list(queryset.filter(earlier).order_by("-name", "-id")[: PAGE_SIZE + 1])
            resources = list(reversed(rows[:PAGE_SIZE]))
            has_previous, has_next = len(rows) > PAGE_SIZE, True
        else:
            if cursor is not None:
                later = Q(name__gt=cursor["name"]) | Q(name=cursor["name"], pk__gt=cursor["pk"])
                queryset = queryset.filter(later)
            rows = list(queryset.order_by("name", "id")[: PAGE_SIZE + 1])
            resources = rows[:PAGE_SIZE]
            has_next, has_previous = len(rows) > PAGE_SIZE, cursor is not None
        for resource in resources:
            # The checkbox says why a row cannot be picked, before a request is written.
            resource.refusal = grant_service.not_requestable(resource) or (  # type: ignore[attr-defined]
                ""
                if any(
                    not grant_service.not_requestable(resource, lv)
                    for lv in resource.live_levels  # type: ignore[attr-defined]
                )
                else "No access level to request"
            )
        if resources:
            next_after = resources[-1].pk if has_next else None
            previous_before = resources[0].pk if has_previous else None

    context = {
        "query": query,
        "errors": errors,
        "resources": resources,
        "next_after": next_after,
        "previous_before": previous_before,
        "paged": query.after is not None or query.before is not None,
        "types": ResourceType.choices,
        "accounts": visible.filter(type=ResourceType.ACCOUNT)
        .order_by("name")
        .values_list("account_id", "name"),
        "ous": visible.filter(type=ResourceType.ORGANIZATIONAL_UNIT)
        .order_by("name")
        .values_list("pk", "name"),
        "regions": visible.exclude(region="")
        .order_by("region")
        .values_list("region", flat=True)
        .distinct(),
        "page_size": PAGE_SIZE,
    }
    return render_page(request, "access/catalogue.html", context, status=400 if errors else 200)


def visible_resource(request: HttpRequest, pk: int) -> Resource:
    """The resource, or 404 when it does not exist or the user may not see it."""
    return get_object_or_404(
        Resource.objects.visible_to(request.user).select_related("app", "parent"), pk=pk
    )


def may_revoke_holders(user: Any, resource: Resource) -> bool:
    """Whether the user may revoke other people's grants of this resource."""
    return permissions.can_revoke_grants_of(user, resource)


@login_required
@require_GET
def resource_detail(request: HttpRequest, pk: int) -> HttpResponse:
    resource = visible_resource(request, pk)
    user = permissions.signed_in(request.user)
    rule = rule_for(resource, user)
    holders: list[Grant] | None = None
    more_holders = False
    if permissions.can_view_resource_holders(user, resource):
        rows = list(
            Grant.objects.current()
            .filter(resource=resource)
            .select_related("user", "access_level")
            .order_by("user__email", "id")[: HOLDERS_SHOWN + 1]
        )
        holders, more_holders = rows[:HOLDERS_SHOWN], len(rows) > HOLDERS_SHOWN
    levels = list(resource.access_levels.filter(deleted_at__isnull=True).order_by("name"))
    context = {
        "resource": resource,
        "levels": levels,
        "owners": list(resource.owners.select_related("user", "group")),
        "rule": rule,
        "rule_lines": rule.describe(resource, user),
        "my_grants": list(
            Grant.objects.filter(resource=resource, user=user)
            .select_related("access_level")
            .order_by("-created_at", "-id")[:MINE_SHOWN]
        ),
        "my_requests": list(
            AccessRequest.objects.filter(resource=resource)
            .filter(Q(user=user) | Q(requested_by=user))
            .select_related("access_level", "user")
            .order_by("-created_at", "-id")[:MINE_SHOWN]
        ),
        "holders": holders,
        "more_holders": more_holders,
        "can_revoke": holders is not None and may_revoke_holders(user, resource),
        "can_manage_rules": permissions.can_manage_rules(user, resource),
        # An account or OU stays requestable with the levels (permission sets) AWS assigns;
        # the others are listed with the reason and not offered.
        "requestable": resource.deleted_at is None
        and rule.allow_requests
        and not resource.not_requestable_reason
        and any(not level.not_requestable_reason for level in levels),
    }
    return render_page(request, "access/resource_detail.html", context)
