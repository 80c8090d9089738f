"""No sequence of an owner's actions gives the owner access without another person's
decision, unless an admin set that up.

A stateful property test over the services: an admin configures a resource's request
rules (some relaxing: auto-approval, self-approval, until revoked, no maximum, automatic
extensions; some stricter, shadowing them), then the resource's owner does whatever the
portal lets them, in any order: edit, add, re-prioritise and delete rules (through a rule
form that fixes no field, so only the rule service stands in the way), ask for access for
themselves, for a colleague, have their manager ask for them, decide requests, extend,
cancel and ask again; meanwhile others decide, the admin changes who owns the resource
and grants directly, and time runs out for requests and grants.

After every step: each request of the owner's that was approved carries a decision by
someone other than the owner, or was approved automatically or by the owner themselves
under the rule the admin set up to judge the owner's requests with that relaxation; each
of the owner's grants comes from such a request or from an admin other than the owner;
the rule that judges the owner's own requests relaxes nothing, or is the one the admin set
up to judge them (and relaxes no more); and every relaxing rule still applies to whom, and
with the priority, the admin gave it.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from access.choices import (
    Decision,
    ExtensionPolicy,
    GrantSource,
    RequestKind,
    RequestStatus,
)
from access.forms import RequestRuleForm, StageFormSet
from access.models import (
    AccessLevel,
    AccessRequest,
    App,
    Grant,
    Owner,
    RequestRule,
    Resource,
    UserGroup,
)
from access.permissions import ADMIN_ROLE
from access.services import grants as grant_service
from access.services import requests as request_service
from access.services import rules as rule_service
from access.services.owners import add_owner, remove_owner
from access.services.requests import applicable_rule
from audit.models import AuditEvent
from tests.fixtures import make_user

RELAXATIONS = ("auto", "self", "until_revoked", "no_maximum", "auto_extensions")
GROUPS = (None, "ops", "other")  # the owner is in "ops"
PRIORITIES = (10, 100, 200)
DURATIONS = (timedelta(hours=1), timedelta(days=1), timedelta(days=30), None)
REFUSED: tuple[type[Exception], ...] = (
    ValidationError,
    PermissionDenied,
    request_service.RequestInvalid,
    request_service.DecisionError,
    grant_service.GrantError,
)

rule_specs = st.fixed_dictionaries(
    {
        "group": st.sampled_from(GROUPS),
        "priority": st.sampled_from(PRIORITIES),
        "relax": st.sets(st.sampled_from(RELAXATIONS), max_size=3),
        "allow_requests": st.sampled_from((True, True, True, False)),
        "reviewers": st.sampled_from(("owners", "manager", "admins")),
    }
)
# An owner's edit keeps the rule's relaxations as they are about half the time, so that
# scope and priority changes of relaxing rules are tried, not only refused relaxations.
edit_specs = rule_specs.flatmap(
    lambda spec: st.sampled_from(("keep", "change")).map(lambda how: {**spec, "how": how})
)


def _fields(spec: dict[str, Any]) -> dict[str, Any]:
    relax = spec["relax"]
    return {
        "auto_approve": "auto" in relax,
        "allow_self_approval": "self" in relax,
        "allow_until_revoked": "until_revoked" in relax,
        "max_duration": None if "no_maximum" in relax else timedelta(days=7),
        "extension_policy": ExtensionPolicy.AUTO_APPROVE
        if "auto_extensions" in relax
        else ExtensionPolicy.SAME_AS_REQUEST,
        "allow_requests": spec["allow_requests"],
        "priority": spec["priority"],
    }


def _relax_of(rule: RequestRule) -> set[str]:
    relax = set()
    if rule.auto_approve:
        relax.add("auto")
    if rule.allow_self_approval:
        relax.add("self")
    if rule.allow_until_revoked:
        relax.add("until_revoked")
    if rule.max_duration is None:
        relax.add("no_maximum")
    if rule.extension_policy == ExtensionPolicy.AUTO_APPROVE or (
        rule.auto_approve and rule.extension_policy == ExtensionPolicy.SAME_AS_REQUEST
    ):
        relax.add("auto_extensions")
    return relax


def _stages_of(rule: RequestRule) -> list[tuple[int, str, str]]:
    return sorted(rule.stages.values_list("order", "reviewers", "mode"))


class SecondPersonMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Each run starts from an empty database: everything it writes is rolled back.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.admin = make_user("ada.admin@example.com", roles=(ADMIN_ROLE,))
        self.manager = make_user("mia.manager@example.com")
        self.owner = make_user("olga.owner@example.com", manager=self.manager)
        self.colleague = make_user("carl.colleague@example.com", manager=self.manager)
        self.co_owner = make_user("pat.peer@example.com")
        app = App.objects.create(name="Example organization")
        self.resource = Resource.objects.create(
            app=app, type="aws_account", remote_id="111111111111", name="prod"
        )
        self.levels = [
            AccessLevel.objects.create(resource=self.resource, remote_id=f"ps-{n}", name=name)
            for n, name in enumerate(("ReadOnly", "Admin"))
        ]
        self.groups = {
            "ops": UserGroup.objects.create(name="Ops"),
            "other": UserGroup.objects.create(name="Other"),
        }
        self.groups["ops"].members.add(self.owner, self.colleague)
        Owner.objects.create(resource=self.resource, user=self.owner)
        # What the admin set up, filled by the initialisation.
        self.configured = False
        self.admin_relaxing: dict[int, tuple[int | None, int, set[str], bool]] = {}
        self.may_auto: set[int] = set()
        self.may_auto_extend: set[int] = set()
        self.may_self_approve: set[int] = set()
        self.admin_stages: dict[int, list[tuple[int, str, str]]] = {}
        self.judging_pk: int | None = None
        self.judging_relax: set[str] = set()

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # The admin's configuration ---------------------------------------------------------
    @initialize(specs=st.lists(rule_specs, min_size=1, max_size=4), co_owner=st.booleans())
    def the_admin_sets_the_rules(self, specs: list[dict[str, Any]], co_owner: bool) -> None:
        for n, spec in enumerate(specs):
            made = RequestRule.objects.create(
                resource=self.resource,
                name=f"Admin's rule {n}",
                requester_group=self.groups.get(spec["group"] or ""),
                require_reason=False,
                recommended_duration=None,
                **_fields(spec),
            )
            if not made.auto_approve:
                made.stages.create(order=1, reviewers=spec["reviewers"], mode="any")
            if made.allow_self_approval:
                self.admin_stages[made.pk] = _stages_of(made)
            if made.relaxations():
                self.admin_relaxing[made.pk] = (
                    made.requester_group_id,
                    made.priority,
                    _relax_of(made),
                    made.allow_requests,
                )
        if co_owner:
            Owner.objects.create(resource=self.resource, user=self.co_owner)
        # The rule the admin meant to judge the owner's own requests, and what it relaxes.
        judging = applicable_rule(
            RequestRule.objects.filter(resource=self.resource), {self.groups["ops"].pk}
        )
        if judging is not None:
            self.judging_pk = judging.pk
            self.judging_relax = set(judging.active_relaxations())
        if judging is not None and judging.allow_requests:
            if judging.auto_approve:
                self.may_auto.add(judging.pk)
            if judging.auto_approve or judging.extension_policy == ExtensionPolicy.AUTO_APPROVE:
                self.may_auto_extend.add(judging.pk)
            # Self-approval is what the admin set up only where the admin also made the
            # owners (the owner among them) a stage's reviewers.
            if judging.allow_self_approval and judging.stages.filter(reviewers="owners").exists():
                self.may_self_approve.add(judging.pk)
        self.configured = True

    # Helpers ---------------------------------------------------------------------------
    def _rules(self) -> list[int]:
        return list(
            RequestRule.objects.filter(resource=self.resource)
            .order_by("pk")
            .values_list("pk", flat=True)
        )

    def _pending(self) -> list[int]:
        return list(
            AccessRequest.objects.filter(status=RequestStatus.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )

    def _owners_grants(self) -> list[int]:
        return list(
            Grant.objects.filter(user=self.owner, status__in=grant_service.ACTIVE_STATUSES)
            .order_by("pk")
            .values_list("pk", flat=True)
        )

    def _save_as_owner(self, rule: RequestRule, spec: dict[str, Any]) -> None:
        values = _fields(spec)
        if spec.get("how") == "keep":
            values |= {
                k: getattr(rule, k)
                for k in (
                    "auto_approve",
                    "allow_self_approval",
                    "allow_until_revoked",
                    "max_duration",
                    "extension_policy",
                )
            }
        group = self.groups.get(spec["group"] or "")
        data = {
            "name": rule.name or "Owner's rule",
            "priority": str(values["priority"]),
            "requester_group": str(group.pk) if group else "",
            "max_duration": str(int(values["max_duration"].total_seconds()))
            if values["max_duration"]
            else "",
            "recommended_duration": "",
            "extension_policy": values["extension_policy"],
            "stages-TOTAL_FORMS": "1",
            "stages-MIN_NUM_FORMS": "0",
            "stages-MAX_NUM_FORMS": "3",
            "stages-0-order": "1",
            "stages-0-reviewers": spec["reviewers"],
            "stages-0-mode": "any",
        }
        for flag in (
            "allow_requests",
            "auto_approve",
            "allow_self_approval",
            "allow_until_revoked",
        ):
            if values[flag]:
                data[flag] = "on"
        stage = rule.stages.first() if rule.pk is not None else None
        data["stages-INITIAL_FORMS"] = "1" if stage is not None else "0"
        if stage is not None:
            data["stages-0-id"] = str(stage.pk)
            if values["auto_approve"]:
                data["stages-0-DELETE"] = "on"
        elif values["auto_approve"]:
            data["stages-0-order"] = ""
        # A form that fixes no field (can_relax): the rule service alone must refuse.
        form = RequestRuleForm(data, instance=rule, can_relax=True)
        stages = StageFormSet(data, instance=rule, prefix="stages")
        if form.is_valid() and stages.is_valid():
            with contextlib.suppress(*REFUSED):
                rule_service.save_request_rule(form, stages, actor=self.owner)
        self._try_my_luck()

    def _try_my_luck(self) -> None:
        # After each change of the rules, the owner asks for access for themselves.
        self._ask(by=self.owner, for_=self.owner, level=0, duration=timedelta(hours=1))

    def _ask(self, *, by: Any, for_: Any, level: int, duration: timedelta | None) -> None:
        with contextlib.suppress(*REFUSED):
            request_service.submit_requests(
                requested_by=by,
                user=for_,
                items=[
                    request_service.RequestItem(self.resource.pk, self.levels[level].pk, duration)
                ],
                reason="work",
            )

    # The owner's actions ----------------------------------------------------------------
    @precondition(lambda self: self.configured)
    @rule(data=st.data(), spec=edit_specs)
    def the_owner_edits_a_rule(self, data: st.DataObject, spec: dict[str, Any]) -> None:
        pks = self._rules()
        if pks:
            pk = data.draw(st.sampled_from(pks))
            self._save_as_owner(RequestRule.objects.get(pk=pk), spec)

    @precondition(lambda self: self.configured)
    @rule(spec=edit_specs)
    def the_owner_adds_a_rule(self, spec: dict[str, Any]) -> None:
        self._save_as_owner(RequestRule(resource=self.resource), spec)

    @precondition(lambda self: self.configured)
    @rule(data=st.data())
    def the_owner_deletes_a_rule(self, data: st.DataObject) -> None:
        pks = self._rules()
        if pks:
            rule = RequestRule.objects.get(pk=data.draw(st.sampled_from(pks)))
            with contextlib.suppress(*REFUSED):
                rule_service.delete_request_rule(rule, actor=self.owner)
            self._try_my_luck()

    @precondition(lambda self: self.configured)
    @rule(level=st.sampled_from((0, 1)), duration=st.sampled_from(DURATIONS))
    def the_owner_asks_for_themselves(self, level: int, duration: timedelta | None) -> None:
        self._ask(by=self.owner, for_=self.owner, level=level, duration=duration)

    @precondition(lambda self: self.configured)
    @rule(level=st.sampled_from((0, 1)), duration=st.sampled_from(DURATIONS))
    def the_manager_asks_for_the_owner(self, level: int, duration: timedelta | None) -> None:
        self._ask(by=self.manager, for_=self.owner, level=level, duration=duration)

    @precondition(lambda self: self.configured)
    @rule(level=st.sampled_from((0, 1)), duration=st.sampled_from(DURATIONS))
    def the_owner_asks_for_a_colleague(self, level: int, duration: timedelta | None) -> None:
        self._ask(by=self.owner, for_=self.colleague, level=level, duration=duration)

    @precondition(lambda self: self.configured)
    @rule(
        data=st.data(),
        who=st.sampled_from(("owner", "owner", "owner", "co_owner", "manager", "admin")),
        approve=st.sampled_from((True, True, True, False)),
    )
    def someone_decides(self, data: st.DataObject, who: str, approve: bool) -> None:
        pending = self._pending()
        if not pending:
            return
        request = AccessRequest.objects.get(pk=data.draw(st.sampled_from(pending)))
        with contextlib.suppress(*REFUSED):
            request_service.decide(request, reviewer=getattr(self, who), approve=approve)

    @precondition(lambda self: self.configured)
    @rule(
        data=st.data(),
        by=st.sampled_from(("owner", "owner", "manager")),
        duration=st.sampled_from((timedelta(hours=1), timedelta(days=1), timedelta(days=7))),
    )
    def the_owners_access_is_extended(self, data: st.DataObject, by: str, duration: Any) -> None:
        grants = self._owners_grants()
        if not grants:
            return
        grant = Grant.objects.select_related("user", "resource", "access_level").get(
            pk=data.draw(st.sampled_from(grants))
        )
        with contextlib.suppress(*REFUSED):
            request_service.request_extension(
                grant, requested_by=getattr(self, by), duration=duration, reason="more"
            )

    @precondition(lambda self: self.configured)
    @rule(data=st.data())
    def the_owner_cancels_a_request(self, data: st.DataObject) -> None:
        pending = self._pending()
        if pending:
            request = AccessRequest.objects.get(pk=data.draw(st.sampled_from(pending)))
            with contextlib.suppress(*REFUSED):
                request_service.cancel_request(request, actor=self.owner)

    # Everyone else ----------------------------------------------------------------------
    @precondition(lambda self: self.configured)
    @rule(who=st.sampled_from(("owner", "co_owner")), group=st.booleans())
    def the_admin_changes_the_owners(self, who: str, group: bool) -> None:
        user = getattr(self, who)
        if group:
            existing = Owner.objects.filter(resource=self.resource, group=self.groups["ops"])
            if existing.exists():
                remove_owner(existing.get(), actor=self.admin)
            else:
                add_owner(self.resource, group=self.groups["ops"], actor=self.admin)
            return
        existing = Owner.objects.filter(resource=self.resource, user=user)
        if existing.exists():
            remove_owner(existing.get(), actor=self.admin)
        else:
            add_owner(self.resource, user=user, actor=self.admin)

    @precondition(lambda self: self.configured)
    @rule(level=st.sampled_from((0, 1)))
    def the_admin_grants_the_owner_directly(self, level: int) -> None:
        with contextlib.suppress(*REFUSED):
            grant_service.create_grant(
                user=self.owner,
                resource=self.resource,
                access_level=self.levels[level],
                expires_at=timezone.now() + timedelta(days=1),
                source=GrantSource.ADMIN,
                actor=self.admin,
                reason="incident",
            )

    @precondition(lambda self: self.configured)
    @rule(later=st.sampled_from((timedelta(hours=2), timedelta(days=3), timedelta(days=40))))
    def time_runs_out(self, later: timedelta) -> None:
        now = timezone.now() + later
        request_service.expire_pending_requests(now)
        grant_service.expire_due_grants(now)

    # What must always hold -------------------------------------------------------------
    @invariant()
    def every_grant_of_the_owner_had_a_second_person_or_an_admins_rule(self) -> None:
        if not self.configured:
            return
        owner = self.owner.pk
        legitimate: set[int] = set()
        for request in AccessRequest.objects.filter(
            user_id=owner, status=RequestStatus.APPROVED
        ).prefetch_related("approvals"):
            rule_id = request.rule_snapshot.get("rule_id")
            approvals = [a for a in request.approvals.all() if a.decision == Decision.APPROVED]
            for approval in approvals:
                if approval.reviewer_id == owner:
                    assert rule_id in self.may_self_approve, (
                        f"the owner approved their own request {request.pk} under rule "
                        f"{rule_id}, which the admin did not let them self-approve under"
                    )
            if not any(a.reviewer_id != owner for a in approvals):
                if request.auto_approved:
                    allowed = (
                        self.may_auto if request.kind == RequestKind.NEW else self.may_auto_extend
                    )
                    assert rule_id in allowed, (
                        f"request {request.pk} ({request.kind}) of the owner was approved "
                        f"automatically under rule {rule_id}, not a rule the admin set up so"
                    )
                else:
                    assert approvals, f"request {request.pk} was approved with no decision"
            legitimate.add(request.pk)
        for grant in Grant.objects.filter(user_id=owner):
            if grant.source == GrantSource.ADMIN:
                assert grant.granted_by_id not in (None, owner)
            else:
                assert grant.source == GrantSource.REQUEST
                assert grant.request_id in legitimate, f"grant {grant.pk} has no approved request"
        grant_ids = [
            str(pk) for pk in Grant.objects.filter(user_id=owner).values_list("pk", flat=True)
        ]
        for event in AuditEvent.objects.filter(action="grant.extended", target_id__in=grant_ids):
            assert event.details["request_id"] in legitimate, (
                f"grant {event.target_id} was extended without an approved extension request"
            )

    @invariant()
    def the_rule_judging_the_owner_relaxes_only_as_the_admin_set_it(self) -> None:
        if not self.configured:
            return
        judging = request_service.rule_for(self.resource, self.owner).rule
        if judging is None or not judging.active_relaxations():
            return
        assert judging.pk == self.judging_pk, (
            f"the owner's own requests are now judged by rule {judging.pk}, which "
            f"{', '.join(judging.active_relaxations())}, not by the admin's rule {self.judging_pk}"
        )
        assert set(judging.active_relaxations()) <= self.judging_relax

    @invariant()
    def relaxing_rules_stay_as_the_admin_set_them(self) -> None:
        if not self.configured:
            return
        for made in RequestRule.objects.filter(resource=self.resource):
            if not made.relaxations():
                continue
            assert made.pk in self.admin_relaxing, f"rule {made.pk} relaxes but no admin made it so"
            group, priority, relax, allow_requests = self.admin_relaxing[made.pk]
            assert (made.requester_group_id, made.priority) == (group, priority), (
                f"the relaxing rule {made.pk} now applies to other people or has another priority"
            )
            assert _relax_of(made) <= relax
            if made.allow_self_approval:
                assert _stages_of(made) == self.admin_stages[made.pk], (
                    f"the self-approving rule {made.pk} now has other reviewers"
                )
            assert allow_requests or not made.allow_requests


@pytest.mark.django_db
def test_no_sequence_of_an_owners_actions_gives_them_access_without_a_second_person():
    run_state_machine_as_test(
        SecondPersonMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
