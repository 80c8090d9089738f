"""Cursor pagination for the whole API (the access API uses it too: audit is the bottom layer)."""

from __future__ import annotations

from rest_framework import exceptions, pagination
from rest_framework.request import Request

from config.parsing import positive_int


class CursorPagination(pagination.CursorPagination):
    """DRF's cursor pagination, with ``page_size`` checked: DRF ignores a page size it cannot
    read (``page_size=true``, or empty, got the default page), so a client's mistake went
    unnoticed.
    Sizes above the maximum are still cut to it, as documented."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int | None:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        size = positive_int(raw)
        if size is None:
            raise exceptions.ValidationError(
                {
                    self.page_size_query_param: [
                        f"{raw!r} is not a page size: give a whole number from 1 to "
                        f"{self.max_page_size}."
                    ]
                }
            )
        return min(size, self.max_page_size)
