"""The fault proxy answers refused and failing calls the way AWS does, through boto3,
and passes everything else to the stand-in unchanged."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from aws_integration import clients

MEMBER_ROLE = "arn:aws:iam::{}:role/PortcullisIngester"


def _member_session(account_id: str):
    return clients.session_for_account(account_id, "PortcullisIngester")


def _create_account(name: str) -> str:
    org = clients.client("organizations")
    try:
        org.create_organization(FeatureSet="ALL")
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "AlreadyInOrganizationException":
            raise
    status = org.create_account(Email=f"{name}@example.com", AccountName=name)
    return status["CreateAccountStatus"]["AccountId"]


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = exc.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_it_refuses_a_denied_query_call_with_access_denied(aws_faults):
    aws_faults.deny("iam", "ListRoles")
    iam = clients.client("iam")
    with pytest.raises(ClientError) as exc:
        iam.list_roles()
    code, status, message = _error(exc)
    assert (code, status) == ("AccessDenied", 403)
    assert "iam:ListRoles" in message
    # Other IAM actions still reach the stand-in.
    assert iam.list_users()["Users"] == []


def test_it_refuses_a_denied_ec2_call_with_unauthorized_operation(aws_faults):
    aws_faults.deny("ec2", "DescribeInstances")
    ec2 = clients.client("ec2", region="us-east-1")
    with pytest.raises(ClientError) as exc:
        ec2.describe_instances()
    code, status, message = _error(exc)
    assert (code, status) == ("UnauthorizedOperation", 403)
    assert "ec2:DescribeInstances" in message
    assert ec2.describe_vpcs()["Vpcs"]


@pytest.mark.parametrize(
    ("service", "action", "call", "status"),
    [
        ("organizations", "ListRoots", lambda: clients.client("organizations").list_roots(), 400),
        ("sso-admin", "ListInstances", lambda: clients.client("sso-admin").list_instances(), 400),
        (
            "identitystore",
            "ListUsers",
            lambda: clients.client("identitystore").list_users(IdentityStoreId="d-1234567890"),
            400,
        ),
        ("eks", "ListClusters", lambda: clients.client("eks").list_clusters(), 403),
    ],
)
def test_it_refuses_json_and_rest_calls_with_access_denied_exception(
    aws_faults, service, action, call, status
):
    rule = aws_faults.deny(service, action)
    with pytest.raises(ClientError) as exc:
        call()
    code, got_status, message = _error(exc)
    assert (code, got_status) == ("AccessDeniedException", status)
    assert f":{action}" in message
    assert rule.hits == 1


def test_it_refuses_sqs_with_its_query_compatible_code(aws_faults):
    sqs = clients.client("sqs")
    queue = sqs.create_queue(QueueName="events")["QueueUrl"]
    aws_faults.deny("sqs", "ReceiveMessage")
    with pytest.raises(ClientError) as exc:
        sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)
    assert _error(exc)[:2] == ("AccessDenied", 403)
    assert sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]


def test_it_tells_eks_operations_apart_by_method_and_path(aws_faults):
    aws_faults.deny("eks", "DescribeCluster")
    eks = clients.client("eks")
    assert eks.list_clusters()["clusters"] == []
    with pytest.raises(ClientError) as exc:
        eks.describe_cluster(name="nope")
    assert _error(exc)[0] == "AccessDeniedException"


def test_it_denies_one_member_account_only(aws_faults):
    denied, allowed = _create_account("denied"), _create_account("allowed")
    aws_faults.deny("ec2", "DescribeInstances", account_id=denied)
    denied_ec2 = clients.client("ec2", session=_member_session(denied), region="us-east-1")
    allowed_ec2 = clients.client("ec2", session=_member_session(allowed), region="us-east-1")
    with pytest.raises(ClientError) as exc:
        denied_ec2.describe_instances()
    assert _error(exc)[0] == "UnauthorizedOperation"
    assert "assumed-role/PortcullisIngester" in _error(exc)[2]
    assert allowed_ec2.describe_instances()["Reservations"] == []
    # Management-account calls (moto's default account) are not that account either.
    assert clients.client("ec2", region="us-east-1").describe_instances()["Reservations"] == []


def test_it_refuses_assume_role_into_one_account(aws_faults):
    denied, allowed = _create_account("denied"), _create_account("allowed")
    aws_faults.deny_assume_role(account_id=denied)
    with pytest.raises(ClientError) as exc:
        clients.assume_role(MEMBER_ROLE.format(denied), external_id="x" * 20)
    code, status, message = _error(exc)
    assert (code, status) == ("AccessDenied", 403)
    assert f"sts:AssumeRole on resource: {MEMBER_ROLE.format(denied)}" in message
    assert clients.assume_role(MEMBER_ROLE.format(allowed))["AccessKeyId"]


def test_it_refuses_assume_role_of_one_role_arn(aws_faults):
    account = _create_account("member")
    aws_faults.deny_assume_role(MEMBER_ROLE.format(account))
    with pytest.raises(ClientError):
        clients.assume_role(MEMBER_ROLE.format(account))
    other = f"arn:aws:iam::{account}:role/Other"
    assert clients.assume_role(other)["AccessKeyId"]


def test_botocore_retries_a_share_of_throttled_and_failing_calls(aws_faults, settings):
    settings.AWS_MAX_ATTEMPTS = 10
    throttle = aws_faults.fail("iam", "ListUsers", status="throttle", share=0.3, seed=1)
    failure = aws_faults.fail("sts", "GetCallerIdentity", status=503, share=0.3, seed=2)
    iam, sts = clients.client("iam"), clients.client("sts")
    for _ in range(10):
        assert iam.list_users()["Users"] == []
        assert sts.get_caller_identity()["Account"]
    assert throttle.hits > 0 and failure.hits > 0
    calls = [c for c in aws_faults.calls if c.action == "ListUsers"]
    # Every fault was followed by a retry that got through.
    assert len(calls) == 10 + throttle.hits
    assert {c.fault for c in aws_faults.faults()} == {"Throttling", "InternalFailure"}


def test_a_fault_given_on_every_attempt_reaches_the_caller(aws_faults, settings):
    settings.AWS_MAX_ATTEMPTS = 2
    aws_faults.fail("organizations", status=500)
    with pytest.raises(ClientError) as exc:
        clients.client("organizations").list_roots()
    assert _error(exc)[:2] == ("InternalServerException", 500)
    # botocore makes the first attempt plus max_attempts retries.
    assert len(aws_faults.faults()) == 1 + settings.AWS_MAX_ATTEMPTS


def test_a_fault_limited_in_times_stops_after_them(aws_faults):
    rule = aws_faults.fail("iam", status="throttle", times=1)
    assert clients.client("iam").list_roles()["Roles"] == []
    assert rule.hits == 1


def test_clear_removes_every_rule(aws_faults):
    aws_faults.deny("iam")
    aws_faults.clear()
    assert clients.client("iam").list_roles()["Roles"] == []
    assert [c.iam_action for c in aws_faults.calls] == ["iam:ListRoles"]
