from __future__ import annotations

import re
from typing import Any


def page_event_ids(response: Any) -> list[int]:
    """The ids of the events listed on an audit page, top to bottom."""
    return [int(pk) for pk in re.findall(r'data-event-id="(\d+)"', response.content.decode())]


def api_event_ids(response: Any) -> list[int]:
    return [row["id"] for row in response.json()["results"]]
