"""``__in`` on PostgreSQL: one array parameter, whatever the length of the list
(config/lookups.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import QuerySet

from access.models import App, Resource, User

pytestmark = pytest.mark.django_db


def _sql(queryset: QuerySet[Any]) -> tuple[str, tuple[Any, ...]]:
    sql, params = queryset.query.get_compiler(connection=connection).as_sql()
    return sql, tuple(params)


@pytest.fixture
def resources() -> list[Resource]:
    app = App.objects.create(name="Lookups")
    return [
        Resource.objects.create(app=app, type="aws_account", remote_id=remote_id, name=name)
        for remote_id, name in [("111", "a"), ("b'c", "b"), ('x,"{}', "c")]
    ]


def test_in_finds_what_it_finds_on_every_database(resources: list[Resource]) -> None:
    first, second, third = resources
    pks = Resource.objects.filter
    assert set(pks(pk__in=[first.pk, third.pk, None, first.pk])) == {first, third}
    assert set(pks(pk__in=[str(second.pk)])) == {second}
    # Quotes, commas and braces are values, not array syntax.
    assert set(pks(remote_id__in=["b'c", 'x,"{}'])) == {second, third}
    assert set(Resource.objects.exclude(remote_id__in=["111"])) == {second, third}
    assert list(pks(pk__in=[])) == []
    assert list(pks(pk__in=[None])) == []
    # A relation given instances, ids or a subquery.
    assert set(pks(app__in=[first.app])) == set(resources)
    assert set(pks(app_id__in={first.app_id})) == set(resources)
    assert set(pks(app__in=App.objects.filter(name="Lookups"))) == set(resources)


def test_in_is_one_array_parameter_on_postgresql(resources: list[Resource]) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the array form is PostgreSQL's; SQLite keeps Django's IN list")
    sql, params = _sql(Resource.objects.filter(pk__in=[3, 1, 2, 1]))
    assert '"access_resource"."id" = ANY(%s)' in sql
    assert params == ([3, 1, 2],)
    sql, params = _sql(Resource.objects.filter(app__in=[resources[0].app]))
    assert '"access_resource"."app_id" = ANY(%s)' in sql
    assert params == ([resources[0].app_id],)
    # A subquery stays a subquery.
    sql, _ = _sql(Resource.objects.filter(app__in=App.objects.filter(name="Lookups")))
    assert " IN (SELECT " in sql


def test_sqlite_keeps_the_in_list() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's form")
    sql, params = _sql(User.objects.filter(pk__in=[1, 2]))
    assert '"access_user"."id" IN (%s, %s)' in sql
    assert params == (1, 2)


def test_more_values_than_a_server_bound_statement_takes(resources: list[Resource]) -> None:
    """A statement bound by the server (DB_PREPARE_THRESHOLD) takes at most 65,535
    parameters; a large organisation's sync asks for more ids than that at once."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's limit")
    wrapper = connections["default"]  # `connection` is a proxy to it
    settings = {
        **wrapper.settings_dict,
        "OPTIONS": {
            **wrapper.settings_dict.get("OPTIONS", {}),
            "server_side_binding": True,
            "prepare_threshold": 1,
        },
    }
    bound = wrapper.__class__(settings, alias="server_bound")
    try:
        ids = [resources[0].pk, *range(10**9, 10**9 + 70_000)]
        sql, params = (
            Resource.objects.filter(pk__in=ids)
            .values_list("pk")
            .query.get_compiler(connection=bound)
            .as_sql()
        )
        with bound.cursor() as cursor:
            cursor.execute(sql, params)
            # The test's transaction holds the rows; this connection sees none, but runs.
            assert cursor.fetchall() == []
    finally:
        bound.close()
