"""The catalogue (every resource a user may ask for, searched and filtered) and one
resource's page.

The catalogue pages by (lower-case name, id) keyset, never by page number: it has as many
rows as the organization has resources (100,000 and more), and a page costs the same
queries and no COUNT(*) wherever it is. Names sort without regard to case
(``analytics-sandbox`` before ``Workloads``), on an index of ``lower(name), id``.

The selection is a basket carried in the query string: every ticked resource is a
``resource`` parameter, which the search form, the page buttons and the request form all
carry on, so resources ticked on one search stay ticked on the next. The catalogue form is
one GET form: its search button comes back here, its request buttons go to the request
form with every ``resource`` in it. Nothing is stored server-side, and the request form
checks each id again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, Q, QuerySet
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from access import permissions
from access.choices import ResourceType
from access.models import AccessLevel, AccessRequest, Grant, Resource
from access.querysets import ResourceQuerySet, live_regions
from access.services import grants as grant_service
from access.services.requests import rule_for
from access.views.common import int_or_none, render_page

PAGE_SIZE = 50
# Holders shown on a resource's page; past this the page says there are more.
HOLDERS_SHOWN = 200
MINE_SHOWN = 20
# As many as the request form takes at once.
BASKET_MAX = 50


@dataclass
class CatalogueQuery:
    q: str = ""
    type: str = ""
    account: str = ""
    ou: int | None = None
    region: str = ""
    after: int | None = None
    before: int | None = None
    # The basket: resources ticked so far, in the order they were ticked.
    selected: list[int] = field(default_factory=list)

    @classmethod
    def from_request(cls, request: HttpRequest) -> tuple[CatalogueQuery, list[str]]:
        get = request.GET
        errors: list[str] = []
        query = cls(
            # A NUL cannot be in PostgreSQL's text: a search for one would be an error page.
            q=get.get("q", "").replace("\x00", "").strip()[:200],
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
        for raw in get.getlist("resource"):
            value = int_or_none(raw.strip())
            # An id that is not a number cannot be in the catalogue: it is dropped.
            if value is not None and value not in query.selected:
                query.selected.append(value)
        if len(query.selected) > BASKET_MAX:
            errors.append(
                f"At most {BASKET_MAX} resources can be requested at once; remove some "
                "from the selection."
            )
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


def search(queryset: ResourceQuerySet, query: CatalogueQuery) -> ResourceQuerySet:
    if query.q:
        queryset = queryset.search(query.q)
    if query.type:
        queryset = queryset.filter(type=query.type)
    if query.account:
        queryset = queryset.filter(account_id=query.account)
    if query.region:
        queryset = queryset.filter(region=query.region)
    if query.ou is not None:
        queryset = queryset.filter(account_id__in=sorted(accounts_below(query.ou)))
    return queryset


def by_name(rows: Any) -> list[tuple[Any, str]]:
    """(value, name, pk) rows as (value, name), by name in any case, then pk."""
    return [(value, name) for value, name, _ in sorted(rows, key=lambda r: (r[1].lower(), r[2]))]


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
        queryset = (
            search(visible, query)
            .annotate(sort_name=Lower("name"))
            .select_related("app")
            .prefetch_related(_live_levels())
        )
        cursor_pk = query.after or query.before
        cursor = (
            (
                visible.filter(pk=cursor_pk)
                .annotate(sort_name=Lower("name"))
                .values("sort_name", "pk")
            ).first()
            if cursor_pk
            else None
        )
        if cursor_pk and cursor is None:
            errors.append("That page no longer exists; go back to the first page.")
        elif query.before is not None and cursor is not None:
            # The first condition is the index's range, the second the rows of the same name.
            earlier = Q(sort_name__lte=cursor["sort_name"]) & (
                Q(sort_name__lt=cursor["sort_name"]) | Q(pk__lt=cursor["pk"])
            )
            rows = list(queryset.filter(earlier).order_by("-sort_name", "-id")[: PAGE_SIZE + 1])
            resources = list(reversed(rows[:PAGE_SIZE]))
            has_previous, has_next = len(rows) > PAGE_SIZE, True
        else:
            if cursor is not None:
                later = Q(sort_name__gte=cursor["sort_name"]) & (
                    Q(sort_name__gt=cursor["sort_name"]) | Q(pk__gt=cursor["pk"])
                )
                queryset = queryset.filter(later)
            rows = list(queryset.order_by("sort_name", "id")[: PAGE_SIZE + 1])
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
        **basket_context(request, visible, query, resources),
        "query": query,
        "errors": errors,
        "resources": resources,
        "next_after": next_after,
        "previous_before": previous_before,
        "paged": query.after is not None or query.before is not None,
        "types": ResourceType.choices,
        # Few rows, found by type: sorted here, as the list, by name in any case.
        "accounts": by_name(
            visible.filter(type=ResourceType.ACCOUNT).values_list("account_id", "name", "pk")
        ),
        "ous": by_name(
            visible.filter(type=ResourceType.ORGANIZATIONAL_UNIT).values_list("pk", "name", "pk")
        ),
        "regions": live_regions(),
        "page_size": PAGE_SIZE,
    }
    return render_page(request, "access/catalogue.html", context, status=400 if errors else 200)


def basket_context(
    request: HttpRequest, visible: QuerySet[Resource], query: CatalogueQuery, shown: list[Resource]
) -> dict[str, Any]:
    """The basket: the selected resources the user may see (one query; others are dropped),
    each with the address of this page without it; which of them the form carries as
    hidden fields (those not on this page, where their checkbox carries them); and the
    address of the catalogue's first page keeping the basket."""
    found = {
        r.pk: r
        for r in visible.filter(pk__in=query.selected[:BASKET_MAX]).only("pk", "name", "type")
    }
    basket = [found[pk] for pk in query.selected[:BASKET_MAX] if pk in found]
    # A row that cannot be picked has its checkbox disabled, which a form does not send.
    on_page = {r.pk for r in shown if not getattr(r, "refusal", "")}
    for resource in basket:
        others = request.GET.copy()
        others.setlist("resource", [str(r.pk) for r in basket if r.pk != resource.pk])
        resource.remove_query = others.urlencode()  # type: ignore[attr-defined]
    keep = QueryDict(mutable=True)
    keep.setlist("resource", [str(r.pk) for r in basket])
    return {
        "basket": basket,
        "selected_ids": {r.pk for r in basket},
        "carried": [r for r in basket if r.pk not in on_page],
        "basket_only_query": keep.urlencode(),
    }


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
