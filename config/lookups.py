"""``__in`` with a list of values, on PostgreSQL, as ``column = ANY(%s)`` with the list as one
array parameter, instead of ``column IN (%s, %s, ...)`` with a parameter per value.

PostgreSQL plans both the same way (it turns an IN list into ``= ANY(ARRAY[...])`` itself),
but the text and the number of parameters no longer grow with the list:

- with parameters bound by the server (``DB_PREPARE_THRESHOLD``), a statement takes at most
  65,535 of them, which a sync's lists of a large organisation's ids exceed;
- a prepared statement is kept per text, so one statement serves every length of list.

Lists of expressions, subqueries, several columns (``ColPairs``) and values whose field
needs another placeholder than ``%s`` keep Django's own SQL; so does every other database.
Installed by ``PortcullisConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, ForeignObject
from django.db.models.expressions import ColPairs  # type: ignore[attr-defined]  # Django 5.2's; not in django-stubs
from django.db.models.fields.related_lookups import RelatedIn
from django.db.models.lookups import In
from django.db.models.sql.compiler import SQLCompiler

SQL = tuple[str, tuple[Any, ...] | list[Any]]


class _AsArray:
    """For an ``In`` lookup: its PostgreSQL form with one array parameter."""

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> SQL:
        lookup: Any = self
        rhs = lookup.rhs
        if (
            not lookup.rhs_is_direct_value()
            or isinstance(lookup.lhs, (ColPairs, tuple))
            or any(hasattr(value, "resolve_expression") for value in rhs)
        ):
            return lookup.as_sql(compiler, connection)
        # As In.process_rhs: NULL is never equal to anything, and nothing is in no list.
        values = _without_nulls(rhs)
        if not values:
            raise EmptyResultSet
        placeholders, params = lookup.batch_process_rhs(compiler, connection, values)
        if any(placeholder != "%s" for placeholder in placeholders):
            return lookup.as_sql(compiler, connection)
        lhs_sql, lhs_params = lookup.process_lhs(compiler, connection)
        return f"{lhs_sql} = ANY(%s)", (*lhs_params, list(params))


def _without_nulls(values: Any) -> list[Any]:
    """The values once each, in order, without None."""
    try:
        return list(dict.fromkeys(v for v in values if v is not None))
    except TypeError:  # unhashable values
        return [v for v in values if v is not None]


class ArrayIn(_AsArray, In):
    pass


class ArrayRelatedIn(_AsArray, RelatedIn):
    pass


def install() -> None:
    """Makes ``__in`` the array form on every field and relation (the ``in`` lookup of a
    class is its own last registration)."""
    Field.register_lookup(ArrayIn)
    ForeignObject.register_lookup(ArrayRelatedIn)
