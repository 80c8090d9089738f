"""The admin stays usable with a large inventory: no query per row, search, autocomplete."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from access.models import (
    AccessLevel,
    ApiToken,
    App,
    Grant,
    Owner,
    RequestRule,
    RequestRuleStage,
    Resource,
    User,
    UserGroup,
)
from access.tests.test_admin import changelist

# A list page costs this many queries at most, however many rows it shows: session,
# user, roles, the page's count and rows, prefetches, and the filters' choices.
MAX_LIST_QUERIES = 14


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


def make_inventory(personas: Any, count: int, *, prefix: str = "r") -> list[Resource]:
    """``count`` resources (some deleted, some children) with an owner, an access level,
    a rule with a stage and a grant each, written in bulk as sync writes them."""
    app = personas.app
    resources = Resource.objects.bulk_create(
        Resource(
            app=app,
            type="aws_iam_role" if i % 2 else "aws_ec2_instance",
            remote_id=f"{prefix}-{i:06d}",
            arn=f"arn:aws:iam::{i % 1000:012d}:role/{prefix}-{i:06d}",
            name=f"{prefix}-resource-{i:06d}",
            account_id=f"{i % 1000:012d}",
            region=("us-east-1", "eu-west-1")[i % 2],
            parent=personas.resource,
            deleted_at=None if i % 10 else personas.resource.first_seen_at,
        )
        for i in range(count)
    )
    Owner.objects.bulk_create(Owner(resource=r, user=personas.approver) for r in resources)
    levels = AccessLevel.objects.bulk_create(
        AccessLevel(resource=r, remote_id="assume", name="assume") for r in resources
    )
    rules = RequestRule.objects.bulk_create(RequestRule(resource=r, name="r") for r in resources)
    RequestRuleStage.objects.bulk_create(RequestRuleStage(rule=rule, order=1) for rule in rules)
    Grant.objects.bulk_create(
        Grant(user=personas.requester, resource=r, access_level=level, source="request")
        for r, level in zip(resources, levels, strict=True)
    )
    ApiToken.objects.bulk_create(
        ApiToken(user=personas.requester, name=f"t{i}", prefix=f"p{i}", digest=f"{prefix}{i:062d}")
        for i in range(count)
    )
    UserGroup.objects.bulk_create(UserGroup(name=f"{prefix}-team-{i}") for i in range(count))
    User.objects.bulk_create(
        User(
            username=f"{prefix}-user-{i}",
            email=f"{prefix}-user-{i}@example.com",
            manager=personas.manager,
        )
        for i in range(count)
    )
    return resources


def count_queries(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


LISTS = [App, Resource, AccessLevel, Owner, RequestRule, Grant, User, UserGroup, ApiToken]


@pytest.mark.parametrize("model", LISTS, ids=lambda m: m.__name__)
def test_a_list_page_costs_the_same_queries_for_20_and_200_rows(
    admin_client, personas, model, django_assert_max_num_queries
):
    url = changelist(model)
    make_inventory(personas, 20, prefix="a")
    admin_client.get(url)  # warm the session and content-type caches
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        small = count_queries(admin_client, url)
    make_inventory(personas, 180, prefix="b")
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        large = count_queries(admin_client, url)
    assert small == large, (small, large)


def test_the_resource_list_at_2000_resources_renders_searches_and_filters(
    admin_client, personas, django_assert_max_num_queries
):
    resources = make_inventory(personas, 2000)
    url = changelist(Resource)
    admin_client.get(url)

    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        response = admin_client.get(url)
    assert response.context["cl"].result_count == 2001
    assert len(response.context["cl"].result_list) == 50

    target = resources[1234]
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        by_name = admin_client.get(url, {"q": "resource-001234"})
    assert list(by_name.context["cl"].result_list) == [target]
    by_remote_id = admin_client.get(url, {"q": target.remote_id})
    assert list(by_remote_id.context["cl"].result_list) == [target]
    by_arn = admin_client.get(url, {"q": "role/r-001234"})
    assert list(by_arn.context["cl"].result_list) == [target]
    by_account = admin_client.get(url, {"q": "000000000234"})
    assert target in by_account.context["cl"].result_list

    deleted = admin_client.get(url, {"deleted": "yes"})
    assert deleted.context["cl"].result_count == 200
    live_roles = admin_client.get(
        url, {"deleted": "no", "type__exact": "aws_iam_role", "region__exact": "eu-west-1"}
    )
    assert live_roles.context["cl"].result_count == 1000


def test_the_grant_list_at_2000_grants_renders_and_searches(
    admin_client, personas, django_assert_max_num_queries
):
    make_inventory(personas, 2000)
    url = changelist(Grant)
    admin_client.get(url)
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        response = admin_client.get(
            url, {"status__exact": "pending", "resource__type__exact": "aws_iam_role"}
        )
    assert response.context["cl"].result_count == 1000
    found = admin_client.get(url, {"q": "resource-000042"})
    assert [g.resource.name for g in found.context["cl"].result_list] == ["r-resource-000042"]


def test_the_parent_autocomplete_answers_at_2000_resources(
    admin_client, personas, django_assert_max_num_queries
):
    make_inventory(personas, 2000)
    url = reverse("admin:autocomplete")
    params = {"app_label": "access", "model_name": "resource", "field_name": "parent"}
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        response = admin_client.get(url, {**params, "term": "resource-00199"})
    body = response.json()
    expected = Resource.objects.filter(name__startswith="r-resource-00199").order_by("name")
    assert [r["text"] for r in body["results"]] == [str(r) for r in expected]
    assert len(body["results"]) == 10
    first_page = admin_client.get(url, {**params, "term": ""}).json()
    assert len(first_page["results"]) == 20
    assert first_page["pagination"]["more"] is True


def test_the_resource_page_with_its_inlines_renders_with_few_queries(
    admin_client, personas, django_assert_max_num_queries
):
    resources = make_inventory(personas, 50)
    url = reverse("admin:access_resource_change", args=[resources[0].pk])
    admin_client.get(url)
    with django_assert_max_num_queries(30):
        response = admin_client.get(url)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("b-user-7@", {"r-resource-000001"}),  # the holder's email, in part
        ("RESOURCE-000003", {"r-resource-000003"}),  # the resource's name, any case
        ("r-000004", {"r-resource-000004"}),  # its remote id, exactly
        ("level-5", {"r-resource-000005"}),  # the access level's name, in part
        ("level-6 resource-000006", {"r-resource-000006"}),  # every word, in any field
        ("level-6 resource-000007", set()),
        ('"level-6"', {"r-resource-000006"}),  # quoted, as the admin's own search
    ],
)
def test_the_grant_list_searches_each_field_through_its_own_table(
    admin_client, personas, q, expected, django_assert_max_num_queries
):
    resources = make_inventory(personas, 10)
    for n, grant in enumerate(Grant.objects.filter(resource__in=resources).order_by("resource")):
        grant.access_level.name = f"level-{n}"
        grant.access_level.save()
        if n == 1:
            grant.user = User.objects.create_user(username="b7", email="b-user-7@example.com")
            grant.save()
    url = changelist(Grant)
    admin_client.get(url)
    # Each word costs the same three lookups (users, resources, levels), however many rows.
    with django_assert_max_num_queries(MAX_LIST_QUERIES + 3 * (len(q.split()) - 1)):
        found = admin_client.get(url, {"q": q})
    assert {g.resource.name for g in found.context["cl"].result_list} == expected


def test_the_grant_list_counts_no_further_than_it_pages(admin_client, personas, monkeypatch):
    from access.admin import grants as grants_admin

    monkeypatch.setattr(grants_admin, "COUNT_LIMIT", 30)
    make_inventory(personas, 40)
    response = admin_client.get(changelist(Grant))
    assert response.context["cl"].result_count == 30
