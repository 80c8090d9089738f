"""Exceptions to the Content-Security-Policy (settings.CONTENT_SECURITY_POLICY), each for
one page of a third-party template that writes inline handlers or styles, each allowed
by the hash of that exact text (so nothing else inline runs there either)."""

from __future__ import annotations

import base64
import hashlib


def csp_hash(source: str) -> str:
    """The CSP source expression allowing exactly ``source`` inline."""
    digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
    return f"'sha256-{digest}'"


# django-import-export's export page (admin/import_export/export.html): the "Select all"
# toggle's onchange handler and two style attributes. 'unsafe-hashes' lets the hashes
# apply to attributes; it allows nothing without a matching hash.
IMPORT_EXPORT_EXPORT_PAGE = {
    "script-src-attr": ["'unsafe-hashes'", csp_hash("onSelectToggleChange(event)")],
    "style-src-attr": [
        "'unsafe-hashes'",
        csp_hash("padding: 0;"),
        csp_hash("font-weight: bold;"),
    ],
}
