"""The OpenAPI schema's view of the API's errors (settings: DEFAULT_SCHEMA_CLASS).

drf-spectacular documents what a view declares, usually the success alone. The API also
answers, on every operation, 401 without valid credentials and 403 when refused; 404 for
an id it does not find and for a stale pagination cursor; 400 for bad input. Clients (and
tests/test_api_fuzz.py) read the schema to know what can come back, so it says so.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse

from access.api.serializers import ErrorSerializer

# Field name -> its messages (or, for nested input, the nested field's); "detail" for input
# that could not be read at all, "non_field_errors" for problems of the whole.
VALIDATION_ERROR = {
    "type": "object",
    "description": "What was wrong with the input, by field.",
    "additionalProperties": {},
}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, with the error answers each operation can give."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        errors: dict[str, Any] = {
            "401": OpenApiResponse(ErrorSerializer, description="No valid credentials."),
            "403": OpenApiResponse(ErrorSerializer, description="The caller may not do this."),
        }
        takes_input = self.method in ("POST", "PUT", "PATCH") or self._is_list_view()
        if takes_input:
            errors["400"] = OpenApiResponse(VALIDATION_ERROR, description="The input is invalid.")
        if "{" in self.path or self._is_list_view():
            errors["404"] = OpenApiResponse(
                ErrorSerializer, description="No such object the caller may see, or a stale cursor."
            )
        for code, response in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        return dict(sorted(responses.items()))
