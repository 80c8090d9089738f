"""`manage.py seed_aws`: fills a running stand-in AWS (moto server) with an organization."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import EndpointConnectionError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo import seed, standin


class Command(BaseCommand):
    help = (
        "Seeds the stand-in AWS at AWS_ENDPOINT_URL (or --endpoint) with an organization: "
        "OUs, member accounts with IAM roles, EC2, EKS, RDS and Aurora, and Identity Center "
        "users, groups and permission sets. Refuses real AWS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--size", choices=sorted(seed.SIZES), default=seed.SMALL.name)
        parser.add_argument(
            "--endpoint", help="The moto server's URL (default: settings.AWS_ENDPOINT_URL)."
        )
        parser.add_argument("--region", help="Home region (default: AWS_DEFAULT_REGION).")
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Empty the stand-in first (POST <endpoint>/moto-api/reset).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["endpoint"]:
            settings.AWS_ENDPOINT_URL = options["endpoint"].rstrip("/")
        if not settings.AWS_ENDPOINT_URL:
            raise CommandError(
                "No stand-in to seed: pass --endpoint http://127.0.0.1:5001 or set "
                "AWS_ENDPOINT_URL. seed_aws never writes to real AWS."
            )
        self._verbosity = int(options["verbosity"])
        size = seed.SIZES[options["size"]]
        try:
            if options["reset"]:
                standin.reset_moto(settings.AWS_ENDPOINT_URL)
            result = seed.seed_organization(size, region=options["region"], progress=self._progress)
        except seed.SeedError as exc:
            raise CommandError(str(exc)) from exc
        except (OSError, EndpointConnectionError) as exc:  # requests' errors are OSErrors
            raise CommandError(
                f"Cannot reach the stand-in AWS at {settings.AWS_ENDPOINT_URL}: {exc}"
            ) from exc
        self.stdout.write(format_summary(result))

    def _progress(self, message: str) -> None:
        if self._verbosity >= 1:
            self.stderr.write(message)


def format_summary(result: seed.SeedResult) -> str:
    """A few lines saying what the seed created, for people."""
    lines = [
        f"Seeded the {result.size.name} organization {result.organization_id} at "
        f"{result.endpoint_url} in {result.seconds:.1f} s",
        f"  management account  {result.management_account_id}",
        f"  regions             {', '.join(result.regions)}",
        f"  Identity Center     {result.instance_arn} (store {result.identity_store_id})",
    ]
    lines += [f"  {label:<30} {count:>6}" for label, count in result.counts().items()]
    lines.append("  accounts:")
    lines += [
        f"    {a.account_id}  {a.name:<24} OU {a.ou_name:<16} {len(a.resources)} resources"
        for a in result.accounts[:10]
    ]
    if len(result.accounts) > 10:
        lines.append(f"    ... and {len(result.accounts) - 10} more")
    return "\n".join(lines)
