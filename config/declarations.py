"""What the installed apps declare in modules of a known name: ``LOOPS`` in ``<app>/loops.py``
(config.loops), ``SCHEDULES`` in ``<app>/schedules.py`` (config.schedules).

An app adds a loop or a schedule by declaring it next to its code; nothing central lists
them, and the one reader below finds them all.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from django.apps import apps


class Named(Protocol):
    @property
    def name(self) -> str: ...


def declared[T: Named](module_name: str, attribute: str, kind: type[T]) -> list[T]:
    """Every installed app's ``<app>.<module_name>.<attribute>``, in app order.

    An app without that module declares nothing; one whose module exists but fails to
    import raises, as does an item that is not a ``kind`` or two items with one name."""
    items: list[T] = []
    for config in apps.get_app_configs():
        dotted = f"{config.name}.{module_name}"
        try:
            module = importlib.import_module(dotted)
        except ModuleNotFoundError as exc:
            if exc.name != dotted:
                raise  # the module exists, and something it imports does not
            continue
        for item in getattr(module, attribute, []):
            if not isinstance(item, kind):
                raise TypeError(f"{dotted}.{attribute} holds {item!r}, not a {kind.__name__}.")
            items.append(item)
    names = [item.name for item in items]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{kind.__name__}s declared twice: {', '.join(duplicates)}.")
    return items
