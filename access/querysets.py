"""Reusable filters and permission scoping for access models."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from django.apps import apps
from django.db import connection, models
from django.db.models import Exists, F, OuterRef, Prefetch, Q, TextField
from django.db.models.functions import Cast

from access import permissions
from access.choices import (
    ASSIGNMENT_IN_AWS,
    AssignmentStatus,
    GrantStatus,
    RequestStatus,
    ResourceType,
)

if TYPE_CHECKING:
    from access.models import AccessRequest, AnyUser, Assignment, Grant, Resource, User  # noqa: F401


# An account name matching more accounts than this is no filter worth the list.
ACCOUNTS_MATCHED = 1000


class ResourceQuerySet(models.QuerySet["Resource"]):
    def live(self) -> ResourceQuerySet:
        return self.filter(deleted_at__isnull=True)

    def visible_to(self, user: AnyUser) -> ResourceQuerySet:
        """What a user may see in the catalogue and the API: every live resource, or all for
        admins and auditors (who also see deleted ones). Object checks fetch through this
        queryset (404 when it does not find the row), so the rule is written once."""
        if not permissions.is_signed_in(user) or not user.is_active:
            return self.none()
        if permissions.is_admin(user) or permissions.is_auditor(user):
            return self
        return self.live()

    def search(self, q: str, *, accounts_in: ResourceQuerySet | None = None) -> ResourceQuerySet:
        """Resources whose remote id is ``q``, whose name, ARN or tags contain it in any case (a tag also as the
        pages show it, ``key=value``: see ``tag_fragments``), or that are in an account
        whose name does (``payments-prod`` finds that account's roles). The catalogue and
        the API search with this.

        Accounts are looked up among this queryset's rows (those the user may see), or
        among ``accounts_in`` when other filters (a type) already narrowed this one, in a
        query of their own, sent when this is called. On
        PostgreSQL each condition has a trigram index (migration 0016); on SQLite the rows
        are read in the caller's order until a page's worth match."""
        q = q.strip()
        if not q:
            return self
        # Read now, as a list: a subquery here kept PostgreSQL from combining the indexes
        # (it took the subquery for a condition matching half the rows).
        accounts = sorted(
            set(
                (self if accounts_in is None else accounts_in)
                .filter(type=ResourceType.ACCOUNT, name__icontains=q)
                .exclude(account_id="")
                .values_list("account_id", flat=True)[:ACCOUNTS_MATCHED]
            )
        )
        match = (
            Q(remote_id=q) | Q(name__icontains=q) | Q(arn__icontains=q) | Q(account_id__in=accounts)
        )
        for fragment in tag_fragments(q):
            match |= Q(tags_text__icontains=fragment)
        # Tags are a JSON object; its text holds every key and value.
        return self.annotate(tags_text=Cast("tags", TextField())).filter(match)


def tag_fragments(q: str) -> list[str]:
    """What ``q`` looks like inside the JSON text of a resource's tags.

    Both databases print a JSON object as ``{"key": "value", ...}`` (SQLite keeps the text
    Django wrote, PostgreSQL renders jsonb the same way). ``key=value``, the way the pages
    show a tag, becomes ``"key": "value``: that key exactly, a value starting with that
    value (``env=prod`` finds ``env=production`` too; ``env=`` any value of ``env``).
    Anything else is looked for inside keys and values. SQLite's text escapes non-ASCII
    characters and PostgreSQL's does not: both spellings are returned.
    """
    spellings = set()
    for ascii_only in (True, False):
        if "=" in q:
            key, value = (part.strip() for part in q.split("=", 1))
            key_text = json.dumps(key, ensure_ascii=ascii_only) if key else '"'
            spellings.add(f"{key_text}: {json.dumps(value, ensure_ascii=ascii_only)[:-1]}")
        else:
            spellings.add(json.dumps(q, ensure_ascii=ascii_only)[1:-1])
    return sorted(spellings)


def live_regions() -> list[str]:
    """The regions of live resources, in order: one index lookup per region (a recursive
    query that jumps from each region to the next), where DISTINCT read every row."""
    # From the app registry: querysets.py is below models.py and imports none of it.
    table = apps.get_model("access", "Resource")._meta.db_table
    sql = f"""
        WITH RECURSIVE regions(region) AS (
            SELECT (
                SELECT region FROM {table} WHERE region > '' AND deleted_at IS NULL
                ORDER BY region LIMIT 1
            )
            UNION ALL
            SELECT (
                SELECT region FROM {table} WHERE region > regions.region
                AND deleted_at IS NULL ORDER BY region LIMIT 1
            )
            FROM regions WHERE regions.region IS NOT NULL
        )
        SELECT region FROM regions WHERE region IS NOT NULL
    """  # noqa: S608 - the table name is the model's, no input
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


class AssignmentQuerySet(models.QuerySet["Assignment"]):
    def request_reapply(self) -> int:
        """Asks for a fresh apply of those AWS holds (the one transition taken on several
        rows at once, outside any assignment's lease). Returns how many."""
        return self.filter(status__in=ASSIGNMENT_IN_AWS).update(status=AssignmentStatus.REAPPLY)


class GrantQuerySet(models.QuerySet["Grant"]):
    def current(self) -> GrantQuerySet:
        return self.filter(
            status__in=[GrantStatus.PENDING, GrantStatus.ACTIVE, GrantStatus.REVOKING]
        )

    def for_user(self, user: User) -> GrantQuerySet:
        return self.filter(user=user)

    def visible_to(self, user: AnyUser) -> GrantQuerySet:
        """Grants a user may read: their own, their reports', those of resources they own,
        or all for admins and auditors. Object checks fetch through this queryset (404 when
        it does not find the row), so the rule is written once."""
        if not permissions.is_signed_in(user) or not user.is_active:
            return self.none()
        if permissions.is_admin(user) or permissions.is_auditor(user):
            return self
        return self.filter(
            Q(user=user)
            | Q(resource__owners__user=user)
            | Q(resource__owners__group__members=user)
            | Q(user__manager=user)
        ).distinct()


class AccessRequestQuerySet(models.QuerySet["AccessRequest"]):
    def awaiting_decision_by(self, user: AnyUser) -> AccessRequestQuerySet:
        """Pending requests whose current stage ``user`` reviews and can still decide: not
        the ones they already decided at this stage, nor their own unless the rule lets
        them approve those. The approvals page, its count and the API all use this."""
        if not permissions.is_signed_in(user):
            return self.none()
        # Through the requests' own rows (querysets.py is below models.py and names no model
        # class): one filter() call each, so both conditions hold for the same row.
        reviews = self.model.objects.filter(
            pk=OuterRef("pk"),
            stage_reviewers__stage=OuterRef("current_stage"),
            stage_reviewers__user=user,
        )
        already_decided = self.model.objects.filter(
            pk=OuterRef("pk"), approvals__stage=OuterRef("current_stage"), approvals__reviewer=user
        )
        return (
            self.filter(Exists(reviews), status=RequestStatus.PENDING)
            .exclude(Exists(already_decided))
            .exclude(Q(user=user) | Q(requested_by=user), rule_snapshot__allow_self_approval=False)
        )

    def with_reviewers(self) -> AccessRequestQuerySet:
        """Prefetches the current stage's reviewers with their users, one query for the
        list, for ``AccessRequest.reviewer_ids`` and ``reviewers``."""
        return self.prefetch_related(current_reviewers())


def current_reviewers() -> Prefetch:
    """The prefetch of requests' current-stage reviewers with their users (one query),
    for querysets and for lists already read (``prefetch_related_objects``)."""
    # From the app registry: querysets.py is below models.py and imports none of it.
    reviewers = apps.get_model("access", "StageReviewer")
    return Prefetch(
        "stage_reviewers",
        queryset=reviewers.objects.filter(stage=F("request__current_stage")).select_related("user"),
    )
