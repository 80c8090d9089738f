#!/usr/bin/env python
"""Django's command-line utility for Portcullis."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if sys.argv[1:2] == ["makemigrations"]:
        # Writing or checking migration files serves nothing and uses no secret, so it runs
        # with development settings when none are given; every other command still
        # refuses to start without SECRET_KEY and FIELD_ENCRYPTION_KEYS.
        os.environ.setdefault("DEBUG", "true")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
