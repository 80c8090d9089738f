"""Validations: is an app's AWS side set up the way Portcullis needs it?

Every check makes the real call the sync (or the poller, or Connect) will make, so a
refusal shows here, with the action AWS named, before it shows as a failed sync. The
latest result of each check is kept as a :class:`Validation` row per (app, key); a run
replaces them all and removes the keys it no longer produces (an account that left the
organization, a queue no longer set).

Checks and their keys:

- ``management.assume_role``: sts:AssumeRole into the ingester role of the management
  account, with the installation's External ID.
- ``management.organizations``: the Organizations reads of the sync.
- ``identity_center.read`` and ``identity_center.instance``: the Identity Center reads,
  and that the configured instance ARN and identity store ID exist and belong together.
- ``member_accounts`` and ``member.<account id>``: per ACTIVE account of the organization
  (at most :data:`MAX_MEMBER_ACCOUNTS`), assume the ingester role there and probe the
  IAM, EC2, EKS and RDS reads in each region to sync.
- ``sqs.receive``: read the CloudTrail events queue without consuming a message.
- ``oidc.discovery``: the OIDC issuer's discovery document.
- ``tasks.schedules``: the background schedules match those declared in code; a missing
  or changed one (the sweep paused, say) is reinstalled, audited, and reported.

``details`` of a failed check: ``code`` and ``message`` (the first AWS error, as AWS
gave it), ``errors`` (every error: action, region, code, message), ``missing_actions``
(the IAM actions AWS refused, e.g. ``ec2:DescribeInstances``), and context such as
``account_id``, ``role_arn``, ``regions`` or ``note``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import record_event
from aws_integration import clients, services, setup_policies, validators
from aws_integration.aws_settings import get_aws_settings
from aws_integration.choices import Severity, ValidationStatus
from aws_integration.models import AwsApp, AwsSettings, Validation
from config.schedules import InstallResult, install_schedules

logger = logging.getLogger(__name__)

# Probing is a handful of calls per account; beyond this many accounts a run would take
# minutes, and the accounts checked already show whether the member role is deployed.
MAX_MEMBER_ACCOUNTS = 50
MEMBER_WORKERS = 8
# Error codes with which AWS says "not allowed" (as opposed to "not found", "throttled").
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedAccess",
        "AuthorizationError",
        "AuthorizationErrorException",
    }
)
ASSUME_ROLE_ACTION = "sts:AssumeRole"
MEMBER_PROBES = [
    "iam:ListRoles",
    "ec2:DescribeRegions",
    "ec2:DescribeInstances",
    "eks:ListClusters",
    "rds:DescribeDBInstances",
    "rds:DescribeDBClusters",
]

WHY = {
    "management.assume_role": (
        "Every read of the organization and every grant starts by assuming the ingester "
        "role in the management account, presenting the External ID its trust policy requires."
    ),
    "management.organizations": (
        "Sync reads the OU tree and the accounts (with their status) from AWS Organizations."
    ),
    "identity_center.read": (
        "Sync reads permission sets, users and groups from IAM Identity Center to offer "
        "them for request and to record who already holds access."
    ),
    "identity_center.instance": (
        "Grants create account assignments and group memberships in this instance and "
        "identity store; a wrong or mismatched ID makes every grant fail."
    ),
    "member_accounts": (
        "Sync reads IAM roles, EC2 instances, EKS clusters and RDS databases in each "
        "member account through the ingester role deployed there (e.g. by the StackSet)."
    ),
    "member": (
        "Sync assumes the ingester role in this account and lists its IAM roles, EC2 "
        "instances, EKS clusters, RDS instances and Aurora clusters."
    ),
    "sqs.receive": (
        "Real-time sync long-polls this queue for CloudTrail events; without receive "
        "permission, changes in AWS arrive only with the next full sync."
    ),
    "tasks.schedules": (
        "Sync, the validations and the grant sweep (the safety net under the grant "
        "engine) run on schedules declared in code; a paused, changed or deleted schedule "
        "stops them."
    ),
    "oidc.discovery": (
        "Users connect to AWS with an ID token from this issuer; AWS and Portcullis "
        "both read its discovery document and signing keys."
    ),
}


@dataclass
class Check:
    """The outcome of one check, before it is stored."""

    key: str
    name: str
    severity: str
    status: str = ValidationStatus.PASSED
    details: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    def __post_init__(self) -> None:
        self.why = self.why or WHY.get(self.key) or WHY[self.key.split(".")[0]]

    def fail(self, action: str, exc: Exception, **context: Any) -> None:
        """Records a failed call: its error, and the action when AWS refused it."""
        code, message = error_of(exc)
        self.status = ValidationStatus.FAILED
        error = {"action": action, "code": code, "message": message, **context}
        errors = self.details.setdefault("errors", [])
        errors.append(error)
        if len(errors) == 1:
            self.details.update(code=code, message=message)
        if code in ACCESS_DENIED_CODES:
            missing = self.details.setdefault("missing_actions", [])
            if action not in missing:
                missing.append(action)

    def skip(self, reason: str) -> Check:
        self.status = ValidationStatus.SKIPPED
        self.details["note"] = reason
        return self

    def block(self, blocker: Check) -> Check:
        """Fails a check that could not run because an earlier one failed."""
        self.status = ValidationStatus.FAILED
        if "blocked_by" in blocker.details:  # name the root cause, not the chain
            self.details.update({k: blocker.details[k] for k in ("blocked_by", "code", "message")})
        else:
            self.details.update(
                blocked_by=blocker.key,
                code=blocker.details.get("code", ""),
                message=f"Not checked: “{blocker.name}” failed.",
            )
        return self

    @property
    def failed(self) -> bool:
        return self.status == ValidationStatus.FAILED


def error_of(exc: Exception) -> tuple[str, str]:
    """The error code and message AWS (or the network) gave."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return error.get("Code", "ClientError"), error.get("Message", str(exc))
    return type(exc).__name__, str(exc)


def _probe(check: Check, action: str, call: Callable[[], Any], **context: Any) -> Any:
    """Makes one call; a failure is recorded on ``check`` and answered with None."""
    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        check.fail(action, exc, **context)
        return None


def restore_schedules(*, actor: Any = None) -> InstallResult:
    """Reinstalls the declared schedules, and audits what it found missing or changed.

    The daily validations run it: schedules are declared in code only (the task admin is
    read-only), so any difference was made behind Portcullis's back."""
    with transaction.atomic():
        # Any other schedule was made outside the code (in django-q2's admin before it
        # became read-only, say), and its func may be any importable function: os.system.
        result = install_schedules(only_declared=True)
        if result.drifted:
            record_event(
                "schedules.restored",
                actor=actor,
                target_type="django_q.schedule",
                target_label="Background schedules",
                details={
                    "created": result.created,
                    "updated": result.updated,
                    "removed": result.removed,
                    "changes": result.changes,
                },
            )
    if result.drifted:
        logger.warning("Background schedules had drifted and were restored: %s.", result)
    return result


# Entry points ------------------------------------------------------------------------
def run_validations(
    app: AwsApp, *, actor: Any = None, schedules: InstallResult | None = None
) -> list[Validation]:
    """Runs every check of ``app`` against AWS and stores the results (one audit event).

    ``schedules`` is what restoring the schedules found, when the caller already did it."""
    aws_settings = get_aws_settings()
    if schedules is None:
        schedules = restore_schedules(actor=actor)
    checks = [*_run_checks(app, aws_settings), _schedules_check(schedules)]
    failed = [check.key for check in checks if check.failed]
    now = timezone.now()
    with transaction.atomic():
        stored = [
            Validation.objects.update_or_create(
                app=app,
                key=check.key,
                defaults={
                    "name": check.name,
                    "why": check.why,
                    "status": check.status,
                    "severity": check.severity,
                    "details": check.details,
                    "checked_at": now,
                },
            )[0]
            for check in checks
        ]
        stale = app.validations.exclude(key__in=[check.key for check in checks])
        removed = sorted(stale.values_list("key", flat=True))
        stale.delete()
        record_event(
            "validations.checked",
            actor=actor,
            target=app,
            details={
                "failed": failed,
                "passed": sum(c.status == ValidationStatus.PASSED for c in checks),
                "skipped": sum(c.status == ValidationStatus.SKIPPED for c in checks),
                "removed": removed,
            },
        )
    return stored


def run_all_validations() -> dict[str, int]:
    """The daily schedule: validates every active AWS app; one app's error does not
    stop the others. Returns the number of failed checks per app name."""
    results: dict[str, int] = {}
    schedules = restore_schedules()
    for app in AwsApp.objects.filter(is_active=True).order_by("pk"):
        try:
            validations = run_validations(app, schedules=schedules)
        except Exception:
            logger.exception("Validating app %s (%s) failed.", app.pk, app.name)
            continue
        results[app.name] = sum(v.status == ValidationStatus.FAILED for v in validations)
    return results


# The checks --------------------------------------------------------------------------
def _run_checks(app: AwsApp, aws_settings: AwsSettings) -> Iterable[Check]:
    external_id = aws_settings.external_id
    assume = Check(
        "management.assume_role",
        "Assume the ingester role in the management account",
        Severity.CRITICAL,
        details={"role_arn": app.role_arn(), "account_id": app.management_account_id},
    )
    session = _assume(assume, app.role_arn(), external_id, region=app.identity_center_region)
    yield assume

    organizations = Check(
        "management.organizations", "Read the organization (AWS Organizations)", Severity.HIGH
    )
    accounts: list[dict[str, Any]] | None = None
    if session is None:
        yield organizations.block(assume)
    else:
        accounts = _check_organizations(organizations, session)
        yield organizations

    yield from _identity_center_checks(app, session, assume)
    yield from _member_checks(app, accounts, organizations, external_id)
    yield _sqs_check(app, session, assume)
    yield _oidc_check(aws_settings)


def _assume(
    check: Check, role_arn: str, external_id: str, *, region: str = ""
) -> boto3.Session | None:
    try:
        credentials = clients.assume_role(
            role_arn, external_id=external_id, session_name="portcullis-validation"
        )
    except (ClientError, BotoCoreError) as exc:
        check.fail(ASSUME_ROLE_ACTION, exc, role_arn=role_arn)
        return None
    return clients.make_session(credentials, region=region or None)


def _check_organizations(check: Check, session: boto3.Session) -> list[dict[str, Any]] | None:
    org = clients.client("organizations", session=session)
    check.details["checked_actions"] = [
        "organizations:DescribeOrganization",
        "organizations:ListRoots",
        "organizations:ListAccounts",
        "organizations:ListOrganizationalUnitsForParent",
    ]
    _probe(check, "organizations:DescribeOrganization", org.describe_organization)
    roots = _probe(check, "organizations:ListRoots", org.list_roots)
    if roots and roots.get("Roots"):
        root_id = roots["Roots"][0]["Id"]
        _probe(
            check,
            "organizations:ListOrganizationalUnitsForParent",
            lambda: org.list_organizational_units_for_parent(ParentId=root_id, MaxResults=1),
        )
    return _probe(
        check,
        "organizations:ListAccounts",
        lambda: [
            account
            for page in org.get_paginator("list_accounts").paginate()
            for account in page["Accounts"]
        ],
    )


def _identity_center_checks(
    app: AwsApp, session: boto3.Session | None, assume: Check
) -> Iterable[Check]:
    read = Check(
        "identity_center.read", "Read IAM Identity Center (sso-admin, identitystore)", Severity.HIGH
    )
    instance = Check(
        "identity_center.instance",
        "Identity Center instance and identity store exist and match",
        Severity.HIGH,
        details={
            "instance_arn": app.identity_center_instance_arn,
            "identity_store_id": app.identity_store_id,
            "region": app.identity_center_region,
        },
    )
    if not app.identity_center_management:
        note = "IAM Identity Center management is off for this app."
        yield read.skip(note)
        yield instance.skip(note)
        return
    if session is None:
        yield read.block(assume)
        yield instance.block(assume)
        return
    region = app.identity_center_region or None
    sso = clients.client("sso-admin", session=session, region=region)
    store = clients.client("identitystore", session=session, region=region)
    read.details["checked_actions"] = [
        "sso:ListInstances",
        "sso:ListPermissionSets",
        "identitystore:ListUsers",
        "identitystore:ListGroups",
    ]
    instances = _probe(
        read,
        "sso:ListInstances",
        lambda: [
            found
            for page in sso.get_paginator("list_instances").paginate()
            for found in page["Instances"]
        ],
    )
    _probe(
        read,
        "sso:ListPermissionSets",
        lambda: sso.list_permission_sets(
            InstanceArn=app.identity_center_instance_arn, MaxResults=1
        ),
    )
    for action, call in (
        ("identitystore:ListUsers", store.list_users),
        ("identitystore:ListGroups", store.list_groups),
    ):
        _probe(read, action, partial(call, IdentityStoreId=app.identity_store_id, MaxResults=1))
    yield read

    if instances is None:
        yield instance.block(read)
        return
    _match_instance(instance, app, instances)
    yield instance


def _match_instance(check: Check, app: AwsApp, instances: list[dict[str, Any]]) -> None:
    found = {i["InstanceArn"]: i.get("IdentityStoreId", "") for i in instances}
    check.details["found"] = [
        {"instance_arn": arn, "identity_store_id": store} for arn, store in found.items()
    ]
    where = app.identity_center_region or settings.AWS_DEFAULT_REGION
    if not found:
        message = (
            f"There is no IAM Identity Center instance in {where} for the management "
            "account: check the Identity Center region, or enable Identity Center there."
        )
    elif app.identity_center_instance_arn not in found:
        message = (
            f"No Identity Center instance {app.identity_center_instance_arn} in {where}; "
            f"the account has {', '.join(sorted(found))}."
        )
    elif found[app.identity_center_instance_arn] != app.identity_store_id:
        message = (
            f"Instance {app.identity_center_instance_arn} uses identity store "
            f"{found[app.identity_center_instance_arn]}, not {app.identity_store_id}."
        )
    else:
        return
    check.status = ValidationStatus.FAILED
    check.details.update(code="Mismatch", message=message)


def _member_checks(
    app: AwsApp,
    accounts: list[dict[str, Any]] | None,
    organizations: Check,
    external_id: str,
) -> Iterable[Check]:
    summary = Check("member_accounts", "Reach the member accounts", Severity.HIGH)
    if not app.organization_management:
        yield summary.skip("AWS Organization management is off for this app.")
        return
    if accounts is None:
        yield summary.block(organizations)
        return
    active = sorted(
        (a for a in accounts if a.get("Status", "ACTIVE") == "ACTIVE"), key=lambda a: a["Id"]
    )
    checked = active[:MAX_MEMBER_ACCOUNTS]
    regions = list(app.regions) or [settings.AWS_DEFAULT_REGION]
    with ThreadPoolExecutor(
        max_workers=MEMBER_WORKERS, thread_name_prefix="validate-member"
    ) as pool:
        results = list(
            pool.map(lambda account: _check_member(app, account, regions, external_id), checked)
        )
    failed = [check.details["account_id"] for check in results if check.failed]
    summary.details.update(
        accounts_active=len(active),
        accounts_checked=len(checked),
        regions=regions,
        failed_accounts=failed,
    )
    notes = []
    if len(active) > len(checked):
        notes.append(
            f"Checked the first {len(checked)} of {len(active)} active accounts (by ID); "
            "the others are checked by each sync."
        )
    if not app.regions:
        notes.append(
            f"Regional reads were probed in {regions[0]}; the sync covers every enabled region."
        )
    if notes:
        summary.details["note"] = " ".join(notes)
    if failed:
        summary.status = ValidationStatus.FAILED
        missing = sorted({a for c in results for a in c.details.get("missing_actions", [])})
        summary.details.update(
            missing_actions=missing,
            code=next(c.details.get("code", "") for c in results if c.failed),
            message=f"{len(failed)} of {len(checked)} accounts failed: {', '.join(failed)}.",
        )
    yield summary
    yield from results


def _check_member(
    app: AwsApp, account: dict[str, Any], regions: list[str], external_id: str
) -> Check:
    account_id = account["Id"]
    role_arn = app.role_arn(account_id)
    check = Check(
        f"member.{account_id}",
        f"Read account {account.get('Name') or account_id} ({account_id})",
        Severity.HIGH,
        details={"account_id": account_id, "role_arn": role_arn, "regions": regions},
    )
    session = _assume(check, role_arn, external_id)
    if session is None:
        return check
    check.details["checked_actions"] = MEMBER_PROBES
    iam = clients.client("iam", session=session)
    _probe(check, "iam:ListRoles", lambda: iam.list_roles(MaxItems=1))
    if not app.regions:
        ec2 = clients.client("ec2", session=session, region=regions[0])
        _probe(check, "ec2:DescribeRegions", ec2.describe_regions)
    for region in regions:
        ec2 = clients.client("ec2", session=session, region=region)
        eks = clients.client("eks", session=session, region=region)
        rds = clients.client("rds", session=session, region=region)
        for action, call in (
            ("ec2:DescribeInstances", partial(ec2.describe_instances, MaxResults=5)),
            ("eks:ListClusters", partial(eks.list_clusters, maxResults=1)),
            ("rds:DescribeDBInstances", partial(rds.describe_db_instances, MaxRecords=20)),
            ("rds:DescribeDBClusters", partial(rds.describe_db_clusters, MaxRecords=20)),
        ):
            _probe(check, action, call, region=region)
    return check


def _sqs_check(app: AwsApp, session: boto3.Session | None, assume: Check) -> Check:
    check = Check(
        "sqs.receive",
        "Receive CloudTrail events from the SQS queue",
        Severity.MEDIUM,
        details={"queue_url": app.sqs_queue_url},
    )
    if not app.sqs_queue_url:
        return check.skip("No SQS queue is set: changes arrive with each full sync.")
    if session is None:
        return check.block(assume)
    region = validators.queue_region(app.sqs_queue_url) or settings.AWS_DEFAULT_REGION
    sqs = clients.client("sqs", session=session, region=region)
    check.details["checked_actions"] = ["sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
    _probe(
        check,
        "sqs:GetQueueAttributes",
        lambda: sqs.get_queue_attributes(
            QueueUrl=app.sqs_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        ),
    )
    # VisibilityTimeout=0 leaves a received message visible to the poller at once, so the
    # probe consumes nothing (it does count as a receive towards a redrive policy).
    _probe(
        check,
        "sqs:ReceiveMessage",
        lambda: sqs.receive_message(
            QueueUrl=app.sqs_queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=0,
            VisibilityTimeout=0,
        ),
    )
    return check


def _oidc_check(aws_settings: AwsSettings) -> Check:
    issuer = aws_settings.oidc_issuer_url
    check = Check(
        "oidc.discovery",
        "OIDC issuer discovery document",
        Severity.HIGH,
        details={"issuer": issuer},
    )
    if not issuer:
        return check.skip("No OIDC issuer is set under AWS settings.")
    ok, message = services.check_oidc_discovery(issuer)
    check.details["message"] = message
    if not ok:
        check.status = ValidationStatus.FAILED
        check.details["code"] = "OidcDiscoveryFailed"
    return check


def _schedules_check(result: InstallResult) -> Check:
    check = Check("tasks.schedules", "Background schedules as declared in code", Severity.HIGH)
    if result.drifted:
        check.status = ValidationStatus.FAILED
        check.details.update(
            code="SchedulesRestored",
            message=(
                "Schedules were missing or changed outside Portcullis and have been "
                f"restored ({result}). Find out who changed them: the audit log has the "
                "schedules.restored event with what was found."
            ),
            created=result.created,
            updated=result.updated,
            removed=result.removed,
        )
    return check


def policy_actions() -> set[str]:
    """The read actions of the pasted permissions policy: every probed action is one."""
    return set(
        setup_policies.MANAGEMENT_READ_ACTIONS
        + setup_policies.MEMBER_READ_ACTIONS
        + setup_policies.SQS_ACTIONS
    )
