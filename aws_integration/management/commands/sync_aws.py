"""`manage.py sync_aws`: a full sync (or one account's) of the AWS apps, run inline with a
progress bar, then what changed and what could not be read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from aws_integration import validators
from aws_integration.choices import SyncStatus
from aws_integration.models import AwsApp, SyncRun
from aws_integration.sync import engine, services


class Command(BaseCommand):
    help = (
        "Syncs AWS apps now, in this process: every active app, or --app ID; the whole "
        "organization, or --account ID only. Prints the counts and the sync issues."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app", type=int, help="The id of the AWS app to sync.")
        parser.add_argument("--account", default="", help="Sync only this account (12 digits).")

    def handle(self, *args: Any, **options: Any) -> None:
        account_id = (options["account"] or "").strip()
        if account_id:
            try:
                validators.validate_account_id(account_id)
            except ValidationError as exc:
                raise CommandError(f"--account {account_id!r}: {' '.join(exc.messages)}") from exc
        apps = self._apps(options["app"])
        failed = []
        for app in apps:
            run = self._sync(app, account_id, int(options["verbosity"]))
            if run.status == SyncStatus.FAILED:
                failed.append(app.name)
        if failed:
            raise CommandError(f"The sync of {', '.join(failed)} failed: see the messages above.")

    def _apps(self, app_id: int | None) -> list[AwsApp]:
        if app_id is None:
            apps = list(AwsApp.objects.filter(is_active=True).order_by("pk"))
            if not apps:
                raise CommandError("There is no active AWS app to sync: create one in the admin.")
            return apps
        app = AwsApp.objects.filter(pk=app_id).first()
        if app is None:
            known = ", ".join(f"{a.pk} ({a.name})" for a in AwsApp.objects.order_by("pk"))
            raise CommandError(
                f"No AWS app has id {app_id}. "
                + (f"AWS apps: {known}." if known else "There are no AWS apps yet.")
            )
        return [app]

    def _sync(self, app: AwsApp, account_id: str, verbosity: int) -> SyncRun:
        run = services.request_sync(
            app, account_id=account_id, enqueue=False, requested_via=services.VIA_COMMAND
        )
        if run.status == SyncStatus.RUNNING:
            self.stderr.write(f"{app.name}: sync run {run.pk} is already running elsewhere.")
            return run
        what = f"account {account_id} of {app.name}" if account_id else app.name
        with tqdm(
            total=0, desc=f"Syncing {what}", unit="unit", disable=verbosity == 0, leave=False
        ) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            run = engine.run_sync(run.pk, on_progress=progress)
        self._report(run)
        return run

    def _report(self, run: SyncRun) -> None:
        seconds = run.duration.total_seconds() if run.duration else 0.0
        styles: dict[str, Callable[[str], str]] = {
            SyncStatus.SUCCEEDED: self.style.SUCCESS,
            SyncStatus.PARTIAL: self.style.WARNING,
        }
        style = styles.get(run.status, self.style.ERROR)
        self.stdout.write(
            style(f"{run.app.name}: {run.get_status_display()} in {seconds:.1f} s (run {run.pk})")
        )
        if run.status == SyncStatus.FAILED:
            self.stdout.write(style(f"  {run.message}"))
        elif run.counts:
            self.stdout.write(f"  {'':<28} {'created':>8} {'updated':>8} {'deleted':>8}")
            for name, counts in run.counts.items():
                self.stdout.write(
                    f"  {name:<28} {counts['created']:>8} {counts['updated']:>8} "
                    f"{counts['deleted']:>8}"
                )
        else:
            self.stdout.write("  No change.")
        for issue in run.issues.order_by("scope"):
            self.stdout.write(
                self.style.WARNING(f"  issue {issue.scope}: {issue.code}: {issue.message}")
            )
