#!/usr/bin/env python
"""Django's command-line utility for Portcullis."""

import os
import sys
from pathlib import Path

from config import running_demo


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # The demo's own commands run in the running demo's environment (DEBUG, its database,
    # the stand-in AWS), so that they work as the demo and the README print them.
    refusal = running_demo.prepare(sys.argv, Path(__file__).resolve().parent)
    if refusal:
        sys.exit(refusal)
    if sys.argv[1:2] == ["makemigrations"]:
        # Writing or checking migration files serves nothing and uses no secret, so it runs
        # with development settings when none are given; every other command still
        # refuses to start without SECRET_KEY and FIELD_ENCRYPTION_KEYS.
        os.environ.setdefault("DEBUG", "true")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
