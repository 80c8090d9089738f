"""What Django's error page and the error mails to ADMINS show of the settings."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class SafeSettingsFilter(SafeExceptionReporterFilter):
    """Django's filter, also hiding the connection URLs, whose passwords its names miss
    (DATABASE_URL, MIGRATE_DATABASE_URL with the tables' owner's, REDIS_URL)."""

    hidden_settings = re.compile(
        SafeExceptionReporterFilter.hidden_settings.pattern + "|DATABASE_URL|REDIS_URL",
        flags=re.IGNORECASE,
    )
