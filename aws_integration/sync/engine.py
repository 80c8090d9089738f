"""The full sync of an app (or of one of its accounts), run inline.

Reading AWS happens on a bounded thread pool, a unit of work per member account (and per
account's Identity Center assignments); all database writes happen on the calling
thread, batch by batch as units finish, so writing overlaps with the listing still in
flight and no connection is shared between threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from access.choices import ResourceType
from access.services import grants as grant_service
from aws_integration.choices import SyncStatus
from aws_integration.models import AwsApp, SyncRun
from aws_integration.sync import scope_jobs
from aws_integration.sync import services as sync_services
from aws_integration.sync.app_connection import SyncTarget
from aws_integration.sync.fetch_results import ScopeResult
from aws_integration.sync.fetchers.base import ServiceLimiter
from aws_integration.sync.fetchers.organizations import ACTIVE
from aws_integration.sync.upsert import InventoryWriter

logger = logging.getLogger("aws_integration.sync")

ACCOUNT = ResourceType.ACCOUNT.value
# Progress is written at most this often (seconds), and when the run ends.
PROGRESS_INTERVAL = 0.5
MAX_ISSUES_IN_MESSAGE = 5

Sink = Callable[[list[ScopeResult]], None]
ProgressCallback = Callable[[int, int], None]


def workers() -> int:
    return settings.AWS_SYNC_WORKERS


class ManagementAccountError(Exception):
    """The management account could not be reached: nothing can be synced."""


@dataclass
class Listing:
    """What to read and where results go: the driver of the full sync, and of the sync
    benchmark's listing without the database (bench/sync_bench.py)."""

    target: SyncTarget
    sink: Sink
    accounts_after: Callable[[ScopeResult], list[tuple[str, str]]]
    account_id: str = ""
    on_progress: ProgressCallback | None = None
    max_workers: int = field(default_factory=workers)
    _last_progress: float = field(default=0.0, init=False, repr=False)

    def run(self) -> None:
        target = self.target
        limiter = ServiceLimiter(self.max_workers)
        session, opened = scope_jobs.open_account(target, target.management_account_id)
        if session is None:
            self.sink([opened])
            assert opened.error is not None
            raise ManagementAccountError(
                f"Cannot assume the ingester role {target.role_arn(target.management_account_id)} "
                f"in the management account: {opened.error.message}"
            )
        shared = target.management_clients(session)
        org_result = scope_jobs.organization(target, shared["organizations"], limiter)
        self.sink([opened, org_result])
        accounts = self.accounts_after(org_result)
        if self.account_id:
            accounts = [a for a in accounts if a[0] == self.account_id]
            if not accounts:
                raise ManagementAccountError(
                    f"Account {self.account_id} is not an active account of the organization."
                )

        pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="sync")
        pending: dict[Future[Any], str] = {}

        def submit(kind: str, unit: Callable[..., Any], *args: Any) -> None:
            pending[pool.submit(unit, *args)] = kind

        try:
            sso = shared.get("sso-admin")
            if target.identity_center:
                if not self.account_id:  # an account's sync leaves the directory alone
                    submit(
                        "store", scope_jobs.identity_store, target, shared["identitystore"], limiter
                    )
                submit("permission_sets", scope_jobs.permission_sets, target, sso, limiter)
            if target.organization_management:
                for account_id, _ in accounts:
                    submit("account", scope_jobs.member_account, target, account_id, limiter)
            # Each account's assignments are a unit too, once the permission sets are known.
            total = 1 + len(pending) + (len(accounts) if target.identity_center else 0)
            done = 1
            self._progress(done, total, force=True)
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    kind = pending.pop(future)
                    results = future.result()
                    if kind == "permission_sets":
                        results, by_arn = results
                        if by_arn is None:  # unnamed levels are worse than stale ones
                            total -= len(accounts)
                        for account_id, name in accounts if by_arn is not None else ():
                            submit(
                                "assignments",
                                scope_jobs.account_assignments,
                                target,
                                sso,
                                account_id,
                                name,
                                by_arn,
                                limiter,
                            )
                    self.sink(results)
                    done += 1
                    self._progress(done, total)
            self._progress(done, total, force=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _progress(self, done: int, total: int, *, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            self.on_progress(done, total)


def _accounts_from_writer(
    writer: InventoryWriter,
) -> Callable[[ScopeResult], list[tuple[str, str]]]:
    def accounts(org_result: ScopeResult) -> list[tuple[str, str]]:
        # After a failed organization listing the accounts known from the last sync are
        # still synced: their own scopes are independent of it.
        rows = writer.by_type.get(ACCOUNT, {}).values()
        return sorted(
            (row.remote_id, row.name)
            for row in rows
            if row.deleted_at is None and row.metadata.get("status") == ACTIVE
        )

    return accounts


# Runs -----------------------------------------------------------------------------------------
def run_sync(run_id: int, *, on_progress: ProgressCallback | None = None) -> SyncRun:
    """Claims a queued run (a conditional update: two workers never run it twice), syncs
    and records the outcome. Returns the run, unchanged when someone else claimed it."""
    claimed = SyncRun.objects.filter(pk=run_id, status=SyncStatus.QUEUED).update(
        status=SyncStatus.RUNNING, started_at=timezone.now(), progress_done=0, message=""
    )
    run = SyncRun.objects.select_related("app").get(pk=run_id)
    if not claimed:
        logger.info("Sync run %s is %s: not running it again.", run_id, run.status)
        return run
    app: AwsApp = run.app
    writer = InventoryWriter(app, run=run, now=run.started_at)

    def progress(done: int, total: int) -> None:
        SyncRun.objects.filter(pk=run.pk).update(progress_done=done, progress_total=total)
        run.progress_done, run.progress_total = done, total
        if on_progress is not None:
            on_progress(done, total)

    try:
        writer.load()
        listing = Listing(
            target=SyncTarget.for_app(app),
            sink=writer.apply,
            accounts_after=_accounts_from_writer(writer),
            account_id=run.account_id,
            on_progress=progress,
        )
        listing.run()
        writer.reconcile_observed()
        # Accounts that joined an OU since its assignments were made get them now.
        reapply_ou_assignments(app)
    except ManagementAccountError as exc:
        writer.record_bookkeeping()
        return _finish(run, writer, SyncStatus.FAILED, str(exc))
    except Exception as exc:
        logger.exception("Sync run %s of %s failed", run.pk, app)
        writer.record_bookkeeping()
        return _finish(
            run, writer, SyncStatus.FAILED, f"The sync stopped on an unexpected error: {exc!r}"
        )
    issues = writer.record_bookkeeping()
    if issues:
        listed = "; ".join(f"{i.scope}: {i.code}" for i in issues[:MAX_ISSUES_IN_MESSAGE])
        more = (
            f" and {len(issues) - MAX_ISSUES_IN_MESSAGE} more"
            if len(issues) > MAX_ISSUES_IN_MESSAGE
            else ""
        )
        message = (
            f"{len(issues)} scope(s) could not be read and were left as they were: {listed}{more}."
        )
        return _finish(run, writer, SyncStatus.PARTIAL, message)
    return _finish(run, writer, SyncStatus.SUCCEEDED, "")


def _finish(run: SyncRun, writer: InventoryWriter, status: str, message: str) -> SyncRun:
    run.status = status
    run.finished_at = timezone.now()
    run.counts = writer.plain_counts()
    run.message = message
    if status != SyncStatus.FAILED:
        run.progress_done = run.progress_total
    sync_services.record_finished(run, account_id=run.account_id, issues=len(writer.failed))
    return run


def reapply_ou_assignments(app: AwsApp) -> int:
    with transaction.atomic():
        return grant_service.reapply_present(app.pk, [ResourceType.ORGANIZATIONAL_UNIT.value])
