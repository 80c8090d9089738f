"""Reading numbers people type into query strings and forms. Depends on no app."""

from __future__ import annotations

from typing import Any

# The largest id a database's bigint holds, plus one.
ID_LIMIT = 2**63


def positive_int(raw: Any, *, below: int = ID_LIMIT) -> int | None:
    """``raw`` (surrounding blanks allowed) as a whole number from 1 to ``below`` - 1, or
    None: only ASCII digits count, so no sign, no decimal point, no other script's digits."""
    text = str(raw if raw is not None else "").strip()
    # The length first: int() refuses strings of thousands of digits (a ValueError).
    if len(text) <= len(str(below)) and text.isascii() and text.isdigit() and 0 < int(text) < below:
        return int(text)
    return None
