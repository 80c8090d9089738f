"""The demo's request rule with a manager stage, and its requests: one waiting for each
reviewing persona (the requester's manager, the resource owner, the admins), one approved
(the requester holds access to give up or extend) and one denied (a decision with its
reason for the auditor to read in the audit log).

Everything goes through the services the pages call (``submit_requests``, ``decide``),
as the demo people themselves, so the audit log and the mail read as if they had clicked.
A scenario is seeded once per database and inventory: it is skipped while a request it
made for the resource exists, and made again when that request expired with nobody
deciding it, or when the resource is gone (each demo start brings a fresh stand-in AWS
with new ids; the old resources' pending requests are then canceled).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction

from access.choices import RequestStatus, ResourceType, ReviewerKind, StageMode
from access.models import AccessLevel, AccessRequest, RequestRule, RequestRuleStage, Resource, User
from access.services.change_log import record_created, snapshot
from access.services.grants import not_requestable
from access.services.pending_requests import end_pending_request
from access.services.requests import (
    DecisionError,
    RequestInvalid,
    RequestItem,
    decide,
    submit_requests,
)
from access.services.rules import RELATED, rule_stage_problems
from aws_integration.models import AwsApp
from demo.users import DEMO_PEOPLE

# The sensitive resource: the first RDS PostgreSQL instance (production data), owned by the
# approver persona (demo.aws_app.DEMO_OWNED_TYPES). Its rule asks the manager first.
SENSITIVE_TYPE = ResourceType.RDS_POSTGRES
MANAGER_RULE_NAME = "Sensitive data: the requester's manager, then an owner"
MANAGER_RULE_STAGES = (
    (1, ReviewerKind.MANAGER, StageMode.ANY),
    (2, ReviewerKind.OWNERS, StageMode.ANY),
)

PENDING, APPROVE, DENY = "pending", "approve", "deny"


@dataclass(frozen=True)
class Scenario:
    """One request of the requester persona: for what, why (the reason also tells the
    seed's requests apart from the demo users' own), and what becomes of it."""

    waits_for: str  # the persona who finds it (a DemoPerson key), for the demo's output
    types: tuple[str, ...]  # the first type the inventory holds a requestable one of
    reason: str
    duration: timedelta
    resource_name: str = ""  # empty: the first of its type, by name
    decision: str = PENDING
    decided_by: str = ""  # a DemoPerson key
    comment: str = ""


REQUESTER = "requester"
SCENARIOS: tuple[Scenario, ...] = (
    # Stage 1 of the sensitive rule: in the manager's approvals.
    Scenario(
        "manager",
        (SENSITIVE_TYPE,),
        "Checking why last night's billing export failed, in the production database.",
        timedelta(hours=4),
    ),
    # Default rule, owned by the approver: in her approvals.
    Scenario(
        "approver",
        (ResourceType.IDC_GROUP,),
        "Joining the security on-call rotation next week.",
        timedelta(days=7),
        resource_name="Security",
    ),
    # No owner: the default rule sends it to the admins.
    Scenario(
        "admin",
        (ResourceType.IDC_ROLE, ResourceType.IAM_ROLE),
        "Reading the production dashboards during Thursday's release.",
        timedelta(hours=8),
    ),
    # Approved by the owner: the requester holds it (My access: give up, extend, connect).
    Scenario(
        "requester",
        (ResourceType.IDC_GROUP,),
        "Covering the support queue this week.",
        timedelta(days=7),
        resource_name="Support",
        decision=APPROVE,
        decided_by="approver",
        comment="Fine for the week.",
    ),
    # Denied with a reason: a decision for the auditor to find in the audit log.
    Scenario(
        "auditor",
        (ResourceType.AURORA_MYSQL, ResourceType.RDS_POSTGRES),
        "Exporting the customer table to a spreadsheet.",
        timedelta(hours=1),
        decision=DENY,
        decided_by="approver",
        comment="Customer data leaves the database through the reporting exports only; "
        "ask the data team for one.",
    ),
)


def _people() -> dict[str, User]:
    by_email = {u.email: u for u in User.objects.filter(email__in=[p.email for p in DEMO_PEOPLE])}
    return {p.key: by_email[p.email] for p in DEMO_PEOPLE if p.email in by_email}


def _requestable(
    app: AwsApp, types: tuple[str, ...], name: str = ""
) -> tuple[Resource, AccessLevel] | None:
    """The first resource of the first of ``types`` that has one (by name), with its first
    access level, that may be requested; None when the inventory holds none."""
    for type_ in types:
        found = Resource.objects.filter(app=app, type=type_, deleted_at__isnull=True)
        if name:
            found = found.filter(name=name)
        for resource in found.order_by("name", "pk"):
            if not_requestable(resource):
                continue
            levels = resource.access_levels.filter(deleted_at__isnull=True)
            for level in levels.order_by("name", "pk"):
                if not not_requestable(resource, level):
                    return resource, level
    return None


def ensure_manager_rule(resource: Resource) -> tuple[RequestRule, bool]:
    """The sensitive resource's rule (stage 1 the requester's manager, stage 2 an owner),
    created with its stages and the one audit event the admin and owners' pages record
    for a new rule (actor: the system); found by name when it exists."""
    rule = RequestRule.objects.filter(resource=resource, name=MANAGER_RULE_NAME).first()
    if rule is not None:
        return rule, False
    problems = rule_stage_problems(
        allow_requests=True, auto_approve=False, orders=[o for o, _, _ in MANAGER_RULE_STAGES]
    )
    assert not problems, problems
    with transaction.atomic():
        rule = RequestRule(
            resource=resource,
            name=MANAGER_RULE_NAME,
            priority=200,
            max_duration=timedelta(days=1),
            recommended_duration=timedelta(hours=4),
            require_reason=True,
            require_deny_comment=True,
        )
        rule.full_clean()
        rule.save()
        for order, reviewers, mode in MANAGER_RULE_STAGES:
            stage = RequestRuleStage(rule=rule, order=order, reviewers=reviewers, mode=mode)
            stage.full_clean()
            stage.save()
        record_created(rule, actor=None, after=snapshot(rule, related=RELATED))
    return rule, True


def _seeded_already(requester: User, resource: Resource, reason: str) -> bool:
    return (
        AccessRequest.objects.filter(user=requester, resource=resource, reason=reason)
        .exclude(status=RequestStatus.EXPIRED)
        .exists()
    )


def _cancel_stale(app: AwsApp, requester: User, reason: str) -> int:
    """Ends the scenario's pending requests for resources gone from the inventory: the
    stand-in starts afresh with new ids at every demo start, so the last start's resources
    are deleted and their requests could never be approved. Audited (request.canceled,
    actor: the system). Returns how many."""
    stale = AccessRequest.objects.filter(
        user=requester,
        reason=reason,
        status=RequestStatus.PENDING,
        resource__app=app,
        resource__deleted_at__isnull=False,
    ).select_related("resource", "access_level")
    canceled = 0
    with transaction.atomic():
        for request in stale:
            canceled += end_pending_request(
                request,
                actor=None,
                details={
                    "user": requester.email,
                    "resource_id": request.resource_id,
                    "resource": request.resource.name,
                    "access_level": request.access_level.name,
                    "note": "the demo started again: this resource is gone from the stand-in AWS",
                },
            )
    return canceled


def _seed(scenario: Scenario, app: AwsApp, people: dict[str, User]) -> str:
    requester = people[REQUESTER]
    found = _requestable(app, scenario.types, scenario.resource_name)
    if found is None:
        what = scenario.resource_name or dict(ResourceType.choices)[scenario.types[0]]
        return f"No requestable {what} in the inventory: nothing waits for {scenario.waits_for}."
    resource, level = found
    _cancel_stale(app, requester, scenario.reason)
    if _seeded_already(requester, resource, scenario.reason):
        return ""
    what = f"{resource.name} ({level.name})"
    try:
        with transaction.atomic():
            (request,) = submit_requests(
                requested_by=requester,
                items=[RequestItem(resource.pk, level.pk, scenario.duration)],
                reason=scenario.reason,
            )
            if scenario.decision != PENDING:
                decide(
                    request,
                    reviewer=people[scenario.decided_by],
                    approve=scenario.decision == APPROVE,
                    comment=scenario.comment,
                )
    except (RequestInvalid, DecisionError) as exc:
        # What the demo users did themselves comes first (their own pending request for
        # the same access, say): the demo starts all the same, and says what it skipped.
        return f"Not asking for {what} for {requester.email}: {exc}"
    if scenario.decision == APPROVE:
        return f"{requester.email} holds {what}, approved by {people[scenario.decided_by].email}."
    if scenario.decision == DENY:
        return f"{requester.email}'s request for {what} was denied, with a reason."
    return f"{requester.email}'s request for {what} waits for {scenario.waits_for}."


def seed_requests(app: AwsApp) -> list[str]:
    """The manager rule and every scenario's request, each made once (see the module's
    docstring); returns one line per thing added."""
    people = _people()
    added: list[str] = []
    found = _requestable(app, (SENSITIVE_TYPE,))
    if found is not None:
        sensitive = found[0]
        _, created = ensure_manager_rule(sensitive)
        if created:
            added.append(f"{sensitive.name} is now judged by “{MANAGER_RULE_NAME}”.")
    for scenario in SCENARIOS:
        line = _seed(scenario, app, people)
        if line:
            added.append(line)
    return added
