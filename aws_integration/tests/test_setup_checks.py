"""Validations probe the real calls against the stand-in AWS (moto over HTTP, through the
fault proxy): a seeded organization passes, and each refusal AWS would give shows on the
check it belongs to, naming the action."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError

from audit.models import AuditEvent
from aws_integration import clients, setup_checks
from aws_integration.choices import Severity, ValidationStatus
from aws_integration.models import AwsApp, Validation
from aws_integration.services import get_aws_settings
from demo import seed, standin
from tests.aws_faults import AwsFaults

pytestmark = pytest.mark.django_db

TINY = seed.SeedSize.minimal(
    "tiny", accounts=3, ec2_per_account=1, assignments_per_account=1, workers=3
)


@pytest.fixture(scope="module")
def _seed_cache() -> dict[str, seed.SeedResult]:
    return {}


@pytest.fixture
def aws_faults(aws_faults_kept, moto_server, _seed_cache) -> AwsFaults:
    """The fault proxy over an organization seeded once for the module (seeding takes
    seconds), and again if another test emptied the stand-in. No test here changes what
    the seed made; rules are cleared between tests."""
    result = _seed_cache.get("tiny")
    if result is None or not _still_seeded(result):
        standin.reset_moto(moto_server)
        aws_faults_kept.reset()
        _seed_cache["tiny"] = seed.seed_organization(TINY, region="us-east-1")
    aws_faults_kept.clear()  # the seed's own calls
    return aws_faults_kept


def _still_seeded(result: seed.SeedResult) -> bool:
    try:
        org = clients.client("organizations").describe_organization()["Organization"]
    except ClientError:
        return False
    return org["Id"] == result.organization_id


@pytest.fixture
def seeded(aws_faults, _seed_cache) -> seed.SeedResult:
    return _seed_cache["tiny"]


@pytest.fixture
def app(seeded: seed.SeedResult) -> AwsApp:
    return AwsApp.objects.create(
        name="Stand-in organization",
        management_account_id=seeded.management_account_id,
        identity_center_management=True,
        identity_center_region=seeded.region,
        identity_center_instance_arn=seeded.instance_arn,
        identity_store_id=seeded.identity_store_id,
        access_portal_url="https://d-1234567890.awsapps.com/start",
        regions=[seeded.region],
    )


def by_key(app: AwsApp) -> dict[str, Validation]:
    return {v.key: v for v in app.validations.all()}


def member_accounts(seeded: seed.SeedResult) -> list[str]:
    return sorted(a.account_id for a in seeded.accounts)


def test_every_check_passes_against_the_seeded_organization(app, seeded):
    stored = setup_checks.run_validations(app)

    results = by_key(app)
    assert len(stored) == len(results)
    accounts = [seeded.management_account_id, *member_accounts(seeded)]
    assert set(results) == {
        "management.assume_role",
        "management.organizations",
        "identity_center.read",
        "identity_center.instance",
        "member_accounts",
        "sqs.receive",
        "oidc.discovery",
        "tasks.schedules",
        *(f"member.{account}" for account in accounts),
    }
    failed = {k: v.details for k, v in results.items() if v.status == ValidationStatus.FAILED}
    assert failed == {}
    # Nothing configured for the queue and the issuer: not applicable, and saying why.
    assert results["sqs.receive"].status == ValidationStatus.SKIPPED
    assert "No SQS queue" in results["sqs.receive"].details["note"]
    assert results["oidc.discovery"].status == ValidationStatus.SKIPPED
    assert results["member_accounts"].details["accounts_checked"] == len(accounts)
    for validation in results.values():
        assert validation.name and validation.why and validation.checked_at
    assert results["management.assume_role"].severity == Severity.CRITICAL


def test_every_probed_action_is_in_the_pasted_policy(app):
    setup_checks.run_validations(app)

    probed = {a for v in app.validations.all() for a in v.details.get("checked_actions", [])}
    assert probed >= {"ec2:DescribeInstances", "sso:ListInstances", "organizations:ListAccounts"}
    assert probed - setup_checks.policy_actions() == set()


def test_a_member_account_refusing_ec2_fails_naming_the_action(app, seeded, aws_faults):
    denied, *others = member_accounts(seeded)
    aws_faults.deny("ec2", "DescribeInstances", account_id=denied)

    setup_checks.run_validations(app)

    results = by_key(app)
    member = results[f"member.{denied}"]
    assert member.status == ValidationStatus.FAILED
    assert member.details["missing_actions"] == ["ec2:DescribeInstances"]
    assert member.details["code"] == "UnauthorizedOperation"
    assert "ec2:DescribeInstances" in member.details["message"]
    assert member.details["errors"][0]["region"] == seeded.region
    for account in others:
        assert results[f"member.{account}"].status == ValidationStatus.PASSED
    summary = results["member_accounts"]
    assert summary.status == ValidationStatus.FAILED
    assert summary.details["failed_accounts"] == [denied]
    assert summary.details["missing_actions"] == ["ec2:DescribeInstances"]


def test_a_member_role_that_cannot_be_assumed_fails_naming_the_role(app, seeded, aws_faults):
    denied = member_accounts(seeded)[1]
    aws_faults.deny_assume_role(account_id=denied)

    setup_checks.run_validations(app)

    member = by_key(app)[f"member.{denied}"]
    role_arn = f"arn:aws:iam::{denied}:role/PortcullisIngester"
    assert member.status == ValidationStatus.FAILED
    assert member.details["missing_actions"] == ["sts:AssumeRole"]
    assert member.details["role_arn"] == role_arn
    assert member.details["code"] == "AccessDenied"
    assert role_arn in member.details["message"]


def test_the_external_id_is_presented_when_assuming_the_role(app, aws_faults):
    setup_checks.run_validations(app)

    assumes = [c for c in aws_faults.calls if c.action == "AssumeRole"]
    assert assumes
    assert {c.params.get("ExternalId") for c in assumes} == {get_aws_settings().external_id}


def test_a_refused_management_role_blocks_the_checks_behind_it(app, aws_faults):
    aws_faults.deny_assume_role(app.role_arn())

    setup_checks.run_validations(app)

    results = by_key(app)
    assume = results["management.assume_role"]
    assert assume.status == ValidationStatus.FAILED
    assert assume.details["missing_actions"] == ["sts:AssumeRole"]
    assert app.role_arn() in assume.details["message"]
    for key in ("management.organizations", "identity_center.read", "member_accounts"):
        assert results[key].status == ValidationStatus.FAILED
        assert results[key].details["blocked_by"] == "management.assume_role"
    assert not [key for key in results if key.startswith("member.")]


def test_refused_organizations_and_identity_center_reads_are_named(app, aws_faults):
    aws_faults.deny("organizations", "ListAccounts")
    aws_faults.deny("identitystore", "ListGroups")

    setup_checks.run_validations(app)

    results = by_key(app)
    assert results["management.organizations"].details["missing_actions"] == [
        "organizations:ListAccounts"
    ]
    assert results["management.organizations"].details["code"] == "AccessDeniedException"
    assert results["identity_center.read"].details["missing_actions"] == [
        "identitystore:ListGroups"
    ]
    # The instance check does not depend on the refused call.
    assert results["identity_center.instance"].status == ValidationStatus.PASSED
    assert results["member_accounts"].details["blocked_by"] == "management.organizations"


def test_a_wrong_identity_store_id_fails_the_match(app, seeded):
    app.identity_store_id = "d-0000000000"
    app.save()

    setup_checks.run_validations(app)

    instance = by_key(app)["identity_center.instance"]
    assert instance.status == ValidationStatus.FAILED
    assert instance.details["message"] == (
        f"Instance {seeded.instance_arn} uses identity store {seeded.identity_store_id}, "
        "not d-0000000000."
    )
    assert instance.details["found"] == [
        {"instance_arn": seeded.instance_arn, "identity_store_id": seeded.identity_store_id}
    ]


def test_an_unknown_instance_arn_fails_the_match(app, seeded):
    app.identity_center_instance_arn = "arn:aws:sso:::instance/ssoins-0000000000000000"
    app.save()

    setup_checks.run_validations(app)

    instance = by_key(app)["identity_center.instance"]
    assert instance.status == ValidationStatus.FAILED
    assert (
        "No Identity Center instance arn:aws:sso:::instance/ssoins-0000"
        in (instance.details["message"])
    )
    assert seeded.instance_arn in instance.details["message"]


def test_the_queue_check_receives_without_consuming(app, aws_faults):
    sqs = clients.client("sqs")
    app.sqs_queue_url = sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex}")["QueueUrl"]
    app.save()
    sqs.send_message(QueueUrl=app.sqs_queue_url, MessageBody='{"detail": {}}')

    setup_checks.run_validations(app)

    assert by_key(app)["sqs.receive"].status == ValidationStatus.PASSED
    assert any(c.action == "ReceiveMessage" for c in aws_faults.calls)
    # The message is still there for the poller, at once.
    received = sqs.receive_message(QueueUrl=app.sqs_queue_url, WaitTimeSeconds=0)
    assert [m["Body"] for m in received["Messages"]] == ['{"detail": {}}']


def test_a_queue_refusing_receive_fails_naming_the_action(app, aws_faults):
    sqs = clients.client("sqs")
    app.sqs_queue_url = sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex}")["QueueUrl"]
    app.save()
    aws_faults.deny("sqs", "ReceiveMessage")

    setup_checks.run_validations(app)

    check = by_key(app)["sqs.receive"]
    assert check.status == ValidationStatus.FAILED
    assert check.details["missing_actions"] == ["sqs:ReceiveMessage"]
    assert check.details["code"] == "AccessDenied"


def test_oidc_discovery_passes_against_the_test_identity_provider(app, idp):
    aws_settings = get_aws_settings()
    aws_settings.oidc_issuer_url = idp
    aws_settings.save()

    setup_checks.run_validations(app)

    check = by_key(app)["oidc.discovery"]
    assert check.status == ValidationStatus.PASSED, check.details
    assert check.details["issuer"] == idp
    assert check.details["message"].endswith(f"is valid (issuer {idp}).")


def test_oidc_discovery_against_a_dead_url_fails_with_the_error(app):
    aws_settings = get_aws_settings()
    aws_settings.oidc_issuer_url = "http://127.0.0.1:9"
    aws_settings.save()

    setup_checks.run_validations(app)

    check = by_key(app)["oidc.discovery"]
    assert check.status == ValidationStatus.FAILED
    assert check.details["code"] == "OidcDiscoveryFailed"
    assert check.details["message"] == (
        "Cannot connect to http://127.0.0.1:9/.well-known/openid-configuration: connection refused."
    )


@pytest.fixture
def other_issuer() -> Iterator[str]:
    """An HTTP server whose discovery document names another issuer than its own URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {"issuer": "https://elsewhere.example.com", "jwks_uri": "https://x/jwks"}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_oidc_discovery_naming_another_issuer_fails(app, other_issuer):
    aws_settings = get_aws_settings()
    aws_settings.oidc_issuer_url = other_issuer
    aws_settings.save()

    setup_checks.run_validations(app)

    check = by_key(app)["oidc.discovery"]
    assert check.status == ValidationStatus.FAILED
    assert check.details["code"] == "OidcDiscoveryFailed"
    assert "names the issuer “https://elsewhere.example.com”" in check.details["message"]


def test_a_run_replaces_results_removes_stale_keys_and_is_audited(
    app, seeded, aws_faults, admin_user
):
    Validation.objects.create(
        app=app,
        key="member.999999999999",
        name="Read account gone",
        why="It left the organization.",
        status=ValidationStatus.FAILED,
        severity=Severity.HIGH,
    )
    denied = member_accounts(seeded)[0]
    rule = aws_faults.deny("eks", "ListClusters", account_id=denied)
    setup_checks.run_validations(app, actor=admin_user)
    assert by_key(app)[f"member.{denied}"].status == ValidationStatus.FAILED

    aws_faults.clear()
    setup_checks.run_validations(app)

    results = by_key(app)
    assert "member.999999999999" not in results
    assert results[f"member.{denied}"].status == ValidationStatus.PASSED
    assert results[f"member.{denied}"].details.get("missing_actions") is None
    assert Validation.objects.filter(app=app, key=f"member.{denied}").count() == 1
    assert rule.hits == 1
    first, second = AuditEvent.objects.filter(action="validations.checked").order_by("id")
    assert first.actor_id == admin_user.pk
    assert first.target_id == str(app.pk)
    assert first.details["failed"] == ["member_accounts", f"member.{denied}"]
    assert first.details["removed"] == ["member.999999999999"]
    assert second.details["failed"] == []
    assert second.actor_name == "system"


def test_member_accounts_are_capped_with_a_note(app, seeded, monkeypatch):
    monkeypatch.setattr(setup_checks, "MAX_MEMBER_ACCOUNTS", 2)

    setup_checks.run_validations(app)

    results = by_key(app)
    assert len([key for key in results if key.startswith("member.")]) == 2
    summary = results["member_accounts"]
    assert summary.details["accounts_active"] == len(seeded.accounts) + 1
    assert summary.details["accounts_checked"] == 2
    assert "Checked the first 2 of 4 active accounts" in summary.details["note"]


def test_toggles_that_are_off_skip_their_checks(app, aws_faults):
    app.organization_management = False
    app.identity_center_management = False
    app.save()

    setup_checks.run_validations(app)

    results = by_key(app)
    for key in ("identity_center.read", "identity_center.instance", "member_accounts"):
        assert results[key].status == ValidationStatus.SKIPPED
    assert not [key for key in results if key.startswith("member.")]
    assert not [c for c in aws_faults.calls if c.service in ("ec2", "sso", "identitystore")]


def test_run_all_validations_checks_every_active_app(app, seeded):
    inactive = AwsApp.objects.create(
        name="Retired organization",
        management_account_id="210987654321",
        is_active=False,
    )

    assert setup_checks.run_all_validations() == {app.name: 0}
    assert app.validations.exists()
    assert not inactive.validations.exists()


def test_throttling_and_server_errors_are_retried_not_reported(app, aws_faults, settings):
    settings.AWS_MAX_ATTEMPTS = 10
    throttle = aws_faults.fail("ec2", status="throttle", share=0.4, seed=3)
    failure = aws_faults.fail("organizations", status=503, share=0.4, seed=4)

    setup_checks.run_validations(app)

    assert throttle.hits and failure.hits
    assert [v.key for v in app.validations.filter(status=ValidationStatus.FAILED)] == []


def test_the_daily_run_restores_a_tampered_sync_schedule_and_reports_it(app):
    from django_q.models import Schedule

    timer = Schedule.objects.get(name="Portcullis: AWS full syncs")
    # Paused for decades, and made to run something else.
    Schedule.objects.filter(pk=timer.pk).update(
        func="os.system", args="'id'", next_run="2099-01-01T00:00:00Z"
    )
    Schedule.objects.filter(name="Portcullis: grant sweep").delete()

    setup_checks.run_all_validations()

    timer.refresh_from_db()
    assert (timer.func, timer.args) == ("aws_integration.sync.tasks.schedule_full_syncs", None)
    assert timer.next_run.year < 2099
    assert Schedule.objects.filter(
        name="Portcullis: grant sweep", func="access.tasks.sweep"
    ).exists()
    check = by_key(app)["tasks.schedules"]
    assert check.status == ValidationStatus.FAILED
    assert check.details["code"] == "SchedulesRestored"
    assert check.details["updated"] == ["Portcullis: AWS full syncs"]
    assert check.details["created"] == ["Portcullis: grant sweep"]
    event = AuditEvent.objects.get(action="schedules.restored")
    changes = event.details["changes"]["Portcullis: AWS full syncs"]
    assert changes["func"] == ["os.system", "aws_integration.sync.tasks.schedule_full_syncs"]
    assert changes["args"] == ["'id'", None]
    assert changes["next_run"][0].startswith("2099-01-01")

    # Restored: the next run finds nothing to report, and audits nothing more.
    setup_checks.run_all_validations()

    assert by_key(app)["tasks.schedules"].status == ValidationStatus.PASSED
    assert AuditEvent.objects.filter(action="schedules.restored").count() == 1


def test_validating_one_app_restores_the_schedules_too(app, personas):
    from django_q.models import Schedule

    Schedule.objects.filter(name="Portcullis: AWS validations").delete()

    setup_checks.run_validations(app, actor=personas.admin)

    assert Schedule.objects.filter(name="Portcullis: AWS validations").exists()
    assert by_key(app)["tasks.schedules"].status == ValidationStatus.FAILED
    event = AuditEvent.objects.get(action="schedules.restored")
    assert event.actor_id == personas.admin.pk
    assert event.details["created"] == ["Portcullis: AWS validations"]
