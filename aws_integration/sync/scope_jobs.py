"""Units of work for the worker threads: each opens what it needs in AWS, runs the
fetchers of its scopes under the service limits, and returns their ScopeResults.

A failure is caught per scope, so one refused service or region leaves the others of the
same account syncing; a refused AssumeRole fails the account's scopes (as a single
"sts" issue) and leaves all of its rows as they were.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aws_integration import clients
from aws_integration.sync.app_connection import SyncTarget
from aws_integration.sync.fetch_results import Scope, ScopeResult
from aws_integration.sync.fetchers import identity_center, members, organizations
from aws_integration.sync.fetchers.base import ServiceLimiter, error_of, guarded, logger

MEMBER_SERVICES = ("iam", "ec2", "eks", "rds")


def sts_scope(account_id: str) -> Scope:
    return Scope(account_id, "", "sts")


def open_account(target: SyncTarget, account_id: str) -> tuple[Any | None, ScopeResult]:
    """A session in the account, and the result of its "sts" scope (failed when the
    ingester role cannot be assumed)."""
    scope = sts_scope(account_id)
    try:
        session = target.session(account_id)
    except Exception as exc:  # refused, unreachable, or bad credentials: all the same here
        logger.warning("Cannot assume %s: %s", target.role_arn(account_id), exc)
        return None, ScopeResult(scope=scope, error=error_of(exc))
    return session, ScopeResult(scope=scope)


def account_regions(
    target: SyncTarget, session: Any, account_id: str, limiter: ServiceLimiter
) -> tuple[list[str], ScopeResult | None]:
    """The app's regions, or the regions enabled in the account when none are set."""
    if target.regions:
        return list(target.regions), None
    holder: list[str] = []

    def fetch() -> ScopeResult:
        ec2 = clients.client("ec2", session=session)
        holder.extend(members.fetch_regions(ec2))
        return ScopeResult(scope=Scope(account_id, "", "regions"))

    with limiter("ec2"):
        result = guarded(Scope(account_id, "", "regions"), fetch)
    return holder, result


def member_account(
    target: SyncTarget,
    account_id: str,
    limiter: ServiceLimiter,
    *,
    services: Iterable[str] = MEMBER_SERVICES,
) -> list[ScopeResult]:
    """Everything synced inside one account: IAM roles, then per region EC2, EKS, RDS."""
    services = tuple(services)
    session, opened = open_account(target, account_id)
    results = [opened]
    if session is None:
        return results
    if "iam" in services:
        with limiter("iam"):
            results.append(
                guarded(
                    members.iam_scope(account_id),
                    lambda: members.fetch_iam_roles(
                        clients.client("iam", session=session),
                        account_id,
                        ingester_role=target.role_name,
                    ),
                )
            )
    regional = [s for s in services if s != "iam"]
    if not regional:
        return results
    regions, regions_result = account_regions(target, session, account_id, limiter)
    if regions_result is not None:
        results.append(regions_result)
    for region in regions:
        results.extend(regional_scopes(session, account_id, region, limiter, regional))
    return results


def regional_scopes(
    session: Any,
    account_id: str,
    region: str,
    limiter: ServiceLimiter,
    services: Iterable[str],
) -> list[ScopeResult]:
    results = []
    for service in services:
        with limiter(service):
            results.append(
                guarded(
                    Scope(account_id, region, service),
                    lambda service=service: _fetch_regional(session, account_id, region, service),  # type: ignore[misc]  # bound
                )
            )
    return results


def _fetch_regional(session: Any, account_id: str, region: str, service: str) -> ScopeResult:
    client = clients.client(service, session=session, region=region)
    if service == "ec2":
        return members.fetch_ec2_instances(client, account_id, region)
    if service == "eks":
        return members.fetch_eks_clusters(client, account_id, region)
    if service == "rds":
        return members.fetch_rds(client, account_id, region)
    raise ValueError(f"No fetcher for the regional service {service!r}.")


def organization(target: SyncTarget, org: Any, limiter: ServiceLimiter) -> ScopeResult:
    with limiter("organizations"):
        return guarded(
            organizations.organization_scope(target.management_account_id),
            lambda: organizations.fetch_organization(org, target.management_account_id),
        )


def identity_store(target: SyncTarget, store: Any, limiter: ServiceLimiter) -> list[ScopeResult]:
    region = target.identity_center_region
    with limiter("identitystore"):
        return [
            guarded(
                identity_center.identity_store_scope(target.management_account_id, region),
                lambda: identity_center.fetch_identity_store(
                    store, target.identity_store_id, target.management_account_id, region
                ),
            )
        ]


def permission_sets(
    target: SyncTarget, sso: Any, limiter: ServiceLimiter, *, changed: Iterable[str] = ()
) -> tuple[list[ScopeResult], dict[str, identity_center.PermissionSet] | None]:
    """The permission sets (None when they could not be listed: then no account's
    assignments are read, since their levels would be unnamed)."""
    region = target.identity_center_region
    found: list[dict[str, identity_center.PermissionSet]] = []

    def fetch() -> ScopeResult:
        result, by_arn = identity_center.fetch_permission_sets(
            sso, target.instance_arn, target.management_account_id, region, changed=changed
        )
        found.append(by_arn)
        return result

    with limiter("sso-admin"):
        result = guarded(
            identity_center.permission_sets_scope(target.management_account_id, region), fetch
        )
    return [result], (found[0] if found and result.ok else None)


def account_assignments(
    target: SyncTarget,
    sso: Any,
    account_id: str,
    account_name: str,
    by_arn: dict[str, identity_center.PermissionSet],
    limiter: ServiceLimiter,
) -> list[ScopeResult]:
    region = target.identity_center_region
    with limiter("sso-admin"):
        return [
            guarded(
                identity_center.assignments_scope(account_id, region),
                lambda: identity_center.fetch_account_assignments(
                    sso,
                    target.instance_arn,
                    region,
                    account_id,
                    account_name,
                    by_arn,
                    target.management_account_id,
                ),
            )
        ]
