"""Parsing CloudTrail events as they really come (the public samples in
shared/samples/cloudtrail, raw and in an EventBridge envelope) and mapping them to
the inventory objects they touch."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils import timezone

from access.choices import ResourceType
from access.models import Resource
from aws_integration.events import handlers
from aws_integration.events.parser import (
    BAD_FIELD,
    MAX_MESSAGE_BYTES,
    MISSING_FIELD,
    NO_ACCOUNT,
    NOT_AN_EVENT,
    NOT_JSON,
    OVERSIZED,
    BadMessage,
    decode_policy_document,
    excerpt,
    normalise_account_id,
    parse_message,
    parse_time,
)
from aws_integration.models import AwsApp
from aws_integration.sync.object_refs import ObjectRef
from tests.fixtures import shared_samples

SAMPLES = shared_samples("cloudtrail")
MANAGEMENT = "111111111111"
PS_ARN = "arn:aws:sso:::permissionSet/ssoins-72233af8ea2d1f14/ps-ae5d1fa1f80b684e"
GROUP_ID = "34887428-4081-7042-c3c6-928d413009e7"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def envelope(record: dict[str, Any], detail_type: str = "AWS API Call via CloudTrail") -> dict:
    """What an EventBridge rule delivers to SQS for a CloudTrail record."""
    source = str(record.get("eventSource", "")).removesuffix(".amazonaws.com")
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": f"aws.{source}",
        "account": record.get("recipientAccountId", ""),
        "time": "2024-01-02T03:04:05Z",
        "region": record.get("awsRegion", ""),
        "resources": [],
        "detail": record,
    }


def sns(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:111111111111:portcullis-events",
        "Message": json.dumps(message),
        "Timestamp": "2024-01-02T03:04:06.000Z",
    }


@pytest.fixture
def app(db) -> AwsApp:
    return AwsApp.objects.create(
        name="Sample organization",
        management_account_id=MANAGEMENT,
        organization_management=True,
        identity_center_management=True,
    )


# What each sample file is: (service, name, account, region, refs or a BadMessage code or an
# outcome). Values are the sample's own; placeholders become "".
EXPECTED: dict[str, tuple[str, str, str, str, Any]] = {
    "ec2.amazonaws.com-CreateTags.json": (
        "ec2",
        "CreateTags",
        "062000000000",
        "us-east-1",
        [ObjectRef("ec2_instance", "062000000000", "us-east-1", "i-060d00000000fd95b")],
    ),
    # A call AWS refused (errorCode): it changed nothing.
    "ec2.amazonaws.com-RunInstances.json": (
        "ec2",
        "RunInstances",
        "900138736586",
        "",
        handlers.REFUSED_CALL,
    ),
    # Anonymised region "ca-northsouth-2r" is no region: refresh() looks in the app's.
    "ec2.amazonaws.com-StartInstances.json": (
        "ec2",
        "StartInstances",
        "309303190113",
        "",
        [ObjectRef("ec2_instance", "309303190113", "", "i-DDd6c7B0e18F0E35f")],
    ),
    "ec2.amazonaws.com-StopInstances.json": (
        "ec2",
        "StopInstances",
        "309303190113",
        "",
        [ObjectRef("ec2_instance", "309303190113", "", "i-DDd6c7B0e18F0E35f")],
    ),
    "ec2.amazonaws.com-TerminateInstances.json": (
        "ec2",
        "TerminateInstances",
        "111222333444",
        "us-west-2",
        [ObjectRef("ec2_instance", "111222333444", "us-west-2", "i-0d9853f67e40ab80b")],
    ),
    # "<region-code>" in awsRegion and in the ARN: the cluster is named instead.
    "eks.amazonaws.com-CreateCluster.json": (
        "eks",
        "CreateCluster",
        "111122223333",
        "",
        [ObjectRef("eks_cluster", "111122223333", "", "test")],
    ),
    "iam.amazonaws.com-CreateRole.json": (
        "iam",
        "CreateRole",
        "609418236337",
        "",
        [
            ObjectRef(
                "iam_role",
                "609418236337",
                "",
                "arn:aws:iam::609418236337:role/stratus-red-team-malicious-iam-role",
            )
        ],
    ),
    "iam.amazonaws.com-DeleteRole.json": (
        "iam",
        "DeleteRole",
        "014824332634",
        "us-east-1",
        [ObjectRef("iam_role", "014824332634", "", "practicum_test_role1")],
    ),
    # 13 digits everywhere: no account to find the role in.
    "iam.amazonaws.com-TagRole.json": ("iam", "TagRole", "", "us-east-1", NO_ACCOUNT),
    "iam.amazonaws.com-UpdateAssumeRolePolicy.json": (
        "iam",
        "UpdateAssumeRolePolicy",
        "751203476945",
        "",
        [ObjectRef("iam_role", "751203476945", "", "stratus-red-team-backdoor-r-role")],
    ),
    # IN_PROGRESS, no account ID yet: CreateAccountResult brings it.
    "organizations.amazonaws.com-CreateAccount.json": (
        "organizations",
        "CreateAccount",
        "111111111111",
        "us-east-1",
        [],
    ),
    "organizations.amazonaws.com-CreateOrganizationalUnit.json": (
        "organizations",
        "CreateOrganizationalUnit",
        "111111111111",
        "us-east-1",
        [ObjectRef("ou", "", "", "ou-examplerootid111-exampleouid111")],
    ),
    "organizations.amazonaws.com-MoveAccount.json": (
        "organizations",
        "MoveAccount",
        "538235518685",
        "us-east-1",
        [ObjectRef("account", "", "", "549271133721")],
    ),
    "organizations.amazonaws.com-RemoveAccountFromOrganization.json": (
        "organizations",
        "RemoveAccountFromOrganization",
        "538235518685",
        "us-east-1",
        [ObjectRef("account", "", "", "588801414845")],
    ),
    "rds.amazonaws.com-CreateDBCluster.json": (
        "rds",
        "CreateDBCluster",
        "951234567898",
        "us-west-1",
        [
            ObjectRef(
                "rds_cluster",
                "951234567898",
                "us-west-1",
                "arn:aws:rds:us-west-1:951234567898:cluster:auroramysql57dbcluster02-cluster",
            )
        ],
    ),
    "rds.amazonaws.com-CreateDBInstance.json": (
        "rds",
        "CreateDBInstance",
        "123456789012",
        "us-east-1",
        [
            ObjectRef(
                "rds_instance",
                "123456789012",
                "us-east-1",
                "arn:aws:rds:us-east-1:123456789012:db:test-instance",
            )
        ],
    ),
    "sso-directory.amazonaws.com-AddMemberToGroup.json": (
        "sso-directory",
        "AddMemberToGroup",
        "",
        "us-east-1",
        [ObjectRef("idc_group_membership", "", "", GROUP_ID)],
    ),
    "sso-directory.amazonaws.com-CreateGroup.json": (
        "sso-directory",
        "CreateGroup",
        "",
        "us-east-1",
        [ObjectRef("idc_group", "", "", GROUP_ID)],
    ),
    # targetId is the placeholder <MANAGEMENT_ACCT_ID>: every account's assignments of
    # the permission set are re-read.
    "sso.amazonaws.com-CreateAccountAssignment.json": (
        "sso",
        "CreateAccountAssignment",
        "",
        "us-east-1",
        [ObjectRef("account_assignment", "", "", PS_ARN)],
    ),
    "sso.amazonaws.com-CreatePermissionSet.json": (
        "sso",
        "CreatePermissionSet",
        "",
        "us-east-1",
        [ObjectRef("permission_set", "", "", PS_ARN)],
    ),
    "sso.amazonaws.com-DeleteAccountAssignment.json": (
        "sso",
        "DeleteAccountAssignment",
        "",
        "us-east-1",
        [ObjectRef("account_assignment", "", "", PS_ARN)],
    ),
    # Trimmed: no eventTime; a volume and an instance tagged together.
    "variants/ec2.amazonaws.com-CreateTags.custodian-trimmed.json": (
        "ec2",
        "CreateTags",
        "644160558196",
        "us-west-2",
        [ObjectRef("ec2_instance", "644160558196", "us-west-2", "i-0dc224bad2cb08740")],
    ),
    "variants/ec2.amazonaws.com-RunInstances.panther-success.json": (
        "ec2",
        "RunInstances",
        "123123123123",
        "us-east-1",
        [ObjectRef("ec2_instance", "123123123123", "us-east-1", "i-0d7e4b9be8a0de6ea")],
    ),
    "variants/ec2.amazonaws.com-TerminateInstances.panther-assumedrole.json": (
        "ec2",
        "TerminateInstances",
        "111222333444",
        "us-west-2",
        [ObjectRef("ec2_instance", "111222333444", "us-west-2", "i-0d9853f67e40ab80b")],
    ),
    "variants/iam.amazonaws.com-CreateRole.sso-invoked.json": (
        "iam",
        "CreateRole",
        "",
        "us-east-1",
        NO_ACCOUNT,
    ),
    "variants/iam.amazonaws.com-DeleteRole.sso-service-role.json": (
        "iam",
        "DeleteRole",
        "",
        "us-east-1",
        NO_ACCOUNT,
    ),
}
ENVELOPES = {
    "iam.amazonaws.com-DeleteRole.json",
    "iam.amazonaws.com-TagRole.json",
    "organizations.amazonaws.com-MoveAccount.json",
    "organizations.amazonaws.com-RemoveAccountFromOrganization.json",
}


def test_every_sample_file_has_an_expectation():
    files = {str(p.relative_to(SAMPLES)) for p in SAMPLES.rglob("*.json")}
    assert files - set(EXPECTED) == {
        "partial/identitystore.amazonaws.com-CreateGroupMembership.ABRIDGED.json"
    }
    assert len(EXPECTED) == 26


def _both_shapes(name: str) -> list[tuple[str, dict[str, Any]]]:
    """The sample as stored, and the other shape: raw records wrapped in an envelope,
    envelopes unwrapped to their record; plus the record wrapped in SNS."""
    data = sample(name)
    if name in ENVELOPES:
        return [("envelope", data), ("raw", data["detail"]), ("sns", sns(data))]
    return [("raw", data), ("envelope", envelope(data)), ("sns", sns(envelope(data)))]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_parses_raw_and_enveloped_into_its_service_name_account_region_and_refs(
    name, app
):
    service, event_name, account_id, region, expected = EXPECTED[name]
    for shape, data in _both_shapes(name):
        event = parse_message(json.dumps(data))
        assert (event.service, event.name, event.account_id, event.region) == (
            service,
            event_name,
            account_id,
            region,
        ), shape
        assert event.enveloped == (shape != "raw")
        if expected == handlers.REFUSED_CALL:
            assert event.failed
            assert handlers.handle_event(event, app).outcome == handlers.REFUSED_CALL
        elif isinstance(expected, str):
            with pytest.raises(BadMessage) as caught:
                handlers.refs_for(event, app)
            assert caught.value.code == expected
        else:
            assert not event.failed
            assert handlers.refs_for(event, app) == expected, shape


def test_the_abridged_identitystore_sample_is_refused_for_its_missing_event_source(app):
    body = SAMPLES / "partial/identitystore.amazonaws.com-CreateGroupMembership.ABRIDGED.json"
    with pytest.raises(BadMessage) as caught:
        parse_message(body.read_text())
    assert caught.value.code == MISSING_FIELD
    assert "eventSource" in caught.value.reason

    # Its shape (memberId an object) is otherwise handled: the group's members are re-read.
    record = json.loads(body.read_text()) | {"eventSource": "identitystore.amazonaws.com"}
    event = parse_message(json.dumps(record))
    assert event.time == datetime(2025, 10, 8, 18, 30, 50, tzinfo=UTC)
    assert handlers.refs_for(event, app) == [
        ObjectRef("idc_group_membership", "", "", "61bb05b0-8031-703d-b9e4-b8c1c28cff23")
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ec2.amazonaws.com-CreateTags.json", datetime(2023, 4, 13, 19, 56, 38, tzinfo=UTC)),
        # Panther's "2021-10-29 23:50:09": no T, no zone (CloudTrail's zone is UTC).
        (
            "ec2.amazonaws.com-TerminateInstances.json",
            datetime(2021, 10, 29, 23, 50, 9, tzinfo=UTC),
        ),
        ("variants/ec2.amazonaws.com-CreateTags.custodian-trimmed.json", None),
        ("rds.amazonaws.com-CreateDBCluster.json", datetime(2018, 10, 28, 8, 55, 37, tzinfo=UTC)),
    ],
)
def test_it_reads_the_event_time_of_samples(name, expected):
    assert parse_message((SAMPLES / name).read_text()).time == expected


def test_a_trimmed_raw_record_takes_its_time_from_the_envelope():
    record = sample("variants/ec2.amazonaws.com-CreateTags.custodian-trimmed.json")
    event = parse_message(json.dumps(envelope(record)))
    assert event.time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-04-13T19:56:38Z", datetime(2023, 4, 13, 19, 56, 38, tzinfo=UTC)),
        ("2023-04-13T19:56:38", datetime(2023, 4, 13, 19, 56, 38, tzinfo=UTC)),
        ("2023-04-13T21:56:38+02:00", datetime(2023, 4, 13, 19, 56, 38, tzinfo=UTC)),
        ("2021-10-29 23:50:09", datetime(2021, 10, 29, 23, 50, 9, tzinfo=UTC)),
        ("2022-10-20 14:21:06.845", datetime(2022, 10, 20, 14, 21, 6, 845000, tzinfo=UTC)),
        (1527535003.208, datetime(2018, 5, 28, 19, 16, 43, 208000, tzinfo=UTC)),  # EKS createdAt
        (1527535003, datetime(2018, 5, 28, 19, 16, 43, tzinfo=UTC)),
        (1666275403000.0, datetime(2022, 10, 20, 14, 16, 43, tzinfo=UTC)),  # ms launchTime
        ("1666275403000", datetime(2022, 10, 20, 14, 16, 43, tzinfo=UTC)),
        ("Apr 25, 2023 12:48:16 AM", datetime(2023, 4, 25, 0, 48, 16, tzinfo=UTC)),
        ("Oct 28, 2018 8:55:35 AM", datetime(2018, 10, 28, 8, 55, 35, tzinfo=UTC)),
        ("Aug 1, 2024 1:37:41 PM", datetime(2024, 8, 1, 13, 37, 41, tzinfo=UTC)),
        ("", None),
        ("not a time", None),
        (None, None),
        (True, None),
        (1e30, None),
    ],
)
def test_it_reads_times_in_every_format_events_use(value, expected):
    assert parse_time(value) == expected


def test_the_time_fields_inside_samples_parse_too():
    created = sample("sso.amazonaws.com-CreatePermissionSet.json")["responseElements"]
    assert parse_time(created["permissionSet"]["createdDate"]) == datetime(
        2023, 4, 25, 0, 48, 16, tzinfo=UTC
    )
    launch = sample("variants/ec2.amazonaws.com-RunInstances.panther-success.json")
    item = launch["responseElements"]["instancesSet"]["items"][0]
    assert parse_time(item["launchTime"]) == datetime(2022, 10, 20, 14, 16, 43, tzinfo=UTC)


# Policy documents --------------------------------------------------------------------------
def test_a_trust_policy_reads_the_same_from_its_json_string_and_its_url_encoded_copy():
    record = sample("iam.amazonaws.com-CreateRole.json")
    from_request = decode_policy_document(record["requestParameters"]["assumeRolePolicyDocument"])
    from_response = decode_policy_document(
        record["responseElements"]["role"]["assumeRolePolicyDocument"]
    )
    assert from_request == from_response
    assert from_request["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::193672423079:root"},
            "Action": "sts:AssumeRole",
        }
    ]
    assert parse_message(json.dumps(record)).trust_policy == from_request


def test_a_single_statement_object_becomes_a_list():
    record = sample("variants/iam.amazonaws.com-CreateRole.sso-invoked.json")
    request = decode_policy_document(record["requestParameters"]["assumeRolePolicyDocument"])
    response = decode_policy_document(
        record["responseElements"]["role"]["assumeRolePolicyDocument"]
    )
    assert request == response
    assert len(request["Statement"]) == 1
    statement = request["Statement"][0]
    assert statement["Action"] == ["sts:AssumeRoleWithSAML", "sts:TagSession"]
    assert statement["Principal"] == {
        "Federated": "arn:aws:iam::<MANAGEMENT_ACCT_ID>:saml-provider/AWSSSO_DO_NOT_DELETE"
    }


def test_update_assume_role_policy_gives_its_new_trust_policy():
    event = parse_message((SAMPLES / "iam.amazonaws.com-UpdateAssumeRolePolicy.json").read_text())
    principals = [s["Principal"] for s in event.trust_policy["Statement"]]
    assert principals == [
        {"Service": "ec2.amazonaws.com"},
        {"AWS": "arn:aws:iam::193672423079:root"},
    ]
    assert event.response == {}  # responseElements: null


@pytest.mark.parametrize("value", [None, "", "not json", "%7Bbroken", "[1, 2]", 42])
def test_an_unreadable_policy_document_is_none(value):
    assert decode_policy_document(value) is None


# responseElements and ids ------------------------------------------------------------------
@pytest.mark.parametrize("value", [None, "None", "null", ""])
def test_response_elements_null_or_the_string_none_read_as_empty(value):
    record = sample("iam.amazonaws.com-DeleteRole.json")["detail"] | {"responseElements": value}
    record["readOnly"] = "False"
    event = parse_message(json.dumps(record))
    assert event.response == {}
    assert event.read_only is False


def test_response_elements_that_are_neither_object_nor_null_are_refused():
    record = sample("iam.amazonaws.com-DeleteRole.json")["detail"] | {"responseElements": [1]}
    with pytest.raises(BadMessage) as caught:
        parse_message(json.dumps(record))
    assert caught.value.code == BAD_FIELD
    assert "responseElements" in caught.value.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("014824332634", "014824332634"),
        ("14824332634", "014824332634"),  # lost its leading zero on the way
        (14824332634, "014824332634"),
        ("1234567890012", ""),  # 13 digits
        ("<MANAGEMENT_ACCT_ID>", ""),
        ("", ""),
        (None, ""),
        (True, ""),
    ],
)
def test_account_ids_are_repaired_or_dropped(value, expected):
    assert normalise_account_id(value) == expected


def test_an_envelope_with_an_eleven_digit_account_gives_the_twelve_digit_id():
    data = sample("iam.amazonaws.com-DeleteRole.json")
    data["account"] = "14824332634"
    for key in ("recipientAccountId",):
        data["detail"].pop(key)
    data["detail"]["userIdentity"].pop("accountId")
    assert parse_message(json.dumps(data)).account_id == "014824332634"


def test_the_account_comes_from_recipient_then_envelope_then_caller():
    record = sample("organizations.amazonaws.com-CreateAccount.json")
    # recipientAccountId (111111111111) wins over the caller's account (111122223333).
    assert parse_message(json.dumps(record)).account_id == "111111111111"
    del record["recipientAccountId"]
    assert parse_message(json.dumps(envelope(record) | {"account": "222222222222"})).account_id == (
        "222222222222"
    )
    assert parse_message(json.dumps(record)).account_id == "111122223333"


def test_a_service_event_carries_the_created_account_id(app):
    result = {
        "eventVersion": "1.08",
        "userIdentity": {"accountId": MANAGEMENT, "invokedBy": "AWS Internal"},
        "eventTime": 1592844420000,
        "eventSource": "organizations.amazonaws.com",
        "eventName": "CreateAccountResult",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "AWS Internal",
        "userAgent": "AWS Internal",
        "requestParameters": None,
        "responseElements": None,
        "eventID": "b7e3b4a4-8b48-4e55-9d0a-8c2b3c6e2c87",
        "readOnly": False,
        "eventType": "AwsServiceEvent",
        "recipientAccountId": MANAGEMENT,
        "serviceEventDetails": {
            "createAccountStatus": {
                "id": "car-examplecreateaccountrequestid111",
                "state": "SUCCEEDED",
                "accountName": "****",
                "accountId": "444455556666",
                "requestedTimestamp": "Jun 22, 2020 4:47:00 PM",
                "completedTimestamp": "Jun 22, 2020 4:47:01 PM",
            }
        },
    }
    body = json.dumps(envelope(result, "AWS Service Event via CloudTrail"))
    event = parse_message(body)
    assert (event.event_type, event.name) == ("AwsServiceEvent", "CreateAccountResult")
    assert event.time == datetime(2020, 6, 22, 16, 47, tzinfo=UTC)
    assert handlers.refs_for(event, app) == [ObjectRef("account", "", "", "444455556666")]

    failed: dict[str, Any] = copy.deepcopy(result)
    failed["serviceEventDetails"]["createAccountStatus"] |= {"state": "FAILED", "accountId": None}
    assert handlers.refs_for(parse_message(json.dumps(failed)), app) == []


def test_an_ec2_state_change_notification_refreshes_the_instance(app):
    body = {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2019-11-11T21:29:54Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
        "detail": {"instance-id": "i-abcd1111", "state": "stopped"},
    }
    event = parse_message(json.dumps(body))
    assert (event.source, event.account_id, event.region) == (
        "ec2.amazonaws.com",
        "123456789012",
        "us-east-1",
    )
    assert handlers.refs_for(event, app) == [
        ObjectRef("ec2_instance", "123456789012", "us-east-1", "i-abcd1111")
    ]


# Bad messages ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ("", NOT_JSON, "empty"),
        ("{not json", NOT_JSON, "not JSON"),
        ("[" * 100_000, NOT_JSON, "nested too deeply"),
        ("[1, 2, 3]", NOT_AN_EVENT, "a list"),
        ("42", NOT_AN_EVENT, "a number"),
        ('"hello"', NOT_AN_EVENT, "a string"),
        ("null", NOT_AN_EVENT, "a null"),
        ('{"hello": "world"}', NOT_AN_EVENT, "keys: hello"),
        ('{"eventSource": "ec2.amazonaws.com"}', MISSING_FIELD, "no eventName"),
        (
            '{"eventName": "RunInstances", "eventTime": "2024-01-01"}',
            MISSING_FIELD,
            "no eventSource",
        ),
        (
            '{"eventName": 7, "eventSource": "ec2.amazonaws.com"}',
            BAD_FIELD,
            "eventName is a number",
        ),
        (
            '{"detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2"}',
            MISSING_FIELD,
            "no detail",
        ),
        (
            '{"detail-type": "AWS API Call via CloudTrail", "detail": "x"}',
            BAD_FIELD,
            "not an object",
        ),
        (
            '{"detail-type": "AWS API Call via CloudTrail", "detail": {"eventSource": "ec2.amazonaws.com"}}',
            MISSING_FIELD,
            "no eventName",
        ),
        ('{"Type": "Notification", "Message": "nope"}', NOT_JSON, "SNS notification's Message"),
        ('{"Type": "Notification", "Message": "[1]"}', NOT_AN_EVENT, "a list"),
    ],
)
def test_it_refuses_what_is_not_an_event_with_a_code_and_a_reason(body, code, words):
    with pytest.raises(BadMessage) as caught:
        parse_message(body)
    assert caught.value.code == code
    assert words in caught.value.reason


def test_it_refuses_a_message_over_sqs_maximum_size_before_reading_it():
    record = sample("ec2.amazonaws.com-CreateTags.json")
    record["userAgent"] = "x" * MAX_MESSAGE_BYTES
    with pytest.raises(BadMessage) as caught:
        parse_message(json.dumps(record))
    assert caught.value.code == OVERSIZED
    assert "262,144" in caught.value.reason
    # Exactly at the limit is fine (the size counts UTF-8 bytes, not characters).
    fits = json.dumps(record)[: MAX_MESSAGE_BYTES - 1]
    with pytest.raises(BadMessage) as caught:
        parse_message(fits)
    assert caught.value.code == NOT_JSON
    with pytest.raises(BadMessage) as caught:
        parse_message("é" * (MAX_MESSAGE_BYTES // 2 + 1))
    assert caught.value.code == OVERSIZED


def test_an_excerpt_is_one_short_line():
    text = excerpt('{"a":\n\t"b\x00c"' + "x" * 500)
    assert text.startswith('{"a": "b?c"')
    assert len(text) == 200
    assert text.endswith("…")
    assert "\n" not in text


# Handlers ----------------------------------------------------------------------------------
def test_tags_on_other_resources_than_instances_are_ignored(app):
    record = sample("variants/ec2.amazonaws.com-CreateTags.custodian-trimmed.json")
    record["requestParameters"]["resourcesSet"]["items"] = [
        {"resourceId": "vol-0f9e1b2c3d4e5f6a7"},
        {"resourceId": "sg-0123456789abcdef0"},
    ]
    event = parse_message(json.dumps(record))
    assert handlers.refs_for(event, app) == []
    assert handlers.handle_event(event, app).outcome == handlers.IGNORED


def test_unknown_events_are_reported_unknown(app):
    record = sample("ec2.amazonaws.com-CreateTags.json") | {"eventName": "CreateVolume"}
    event = parse_message(json.dumps(record))
    assert handlers.refs_for(event, app) is None
    assert handlers.handle_event(event, app).outcome == handlers.UNKNOWN


def _event(source: str, name: str, request: dict, response: dict | None = None, **extra) -> Any:
    record = {
        "eventVersion": "1.09",
        "eventTime": "2024-05-01T10:00:00Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": "eu-west-1",
        "requestParameters": request,
        "responseElements": response,
        "recipientAccountId": "222233334444",
        "eventType": "AwsApiCall",
    } | extra
    return parse_message(json.dumps(envelope(record)))


# The event types without a real sample, in the shapes AWS documents.
@pytest.mark.parametrize(
    ("source", "name", "request_", "response", "expected"),
    [
        (
            "ec2.amazonaws.com",
            "DeleteTags",
            {
                "resourcesSet": {"items": [{"resourceId": "i-0123456789abcdef0"}]},
                "tagSet": {"items": [{"key": "env"}]},
            },
            {"requestId": "r", "_return": True},
            [ObjectRef("ec2_instance", "222233334444", "eu-west-1", "i-0123456789abcdef0")],
        ),
        (
            "iam.amazonaws.com",
            "UntagRole",
            {"roleName": "Deployer", "tagKeys": ["team"]},
            None,
            [ObjectRef("iam_role", "222233334444", "", "Deployer")],
        ),
        (
            "rds.amazonaws.com",
            "DeleteDBInstance",
            {"dBInstanceIdentifier": "Orders-DB", "skipFinalSnapshot": True},
            None,
            [ObjectRef("rds_instance", "222233334444", "eu-west-1", "orders-db")],
        ),
        (
            "rds.amazonaws.com",
            "ModifyDBInstance",
            {
                "dBInstanceIdentifier": "orders-db",
                "newDBInstanceIdentifier": "orders-db-2",
                "applyImmediately": True,
            },
            {"dBInstanceArn": "arn:aws:rds:eu-west-1:222233334444:db:orders-db"},
            [
                ObjectRef(
                    "rds_instance",
                    "222233334444",
                    "eu-west-1",
                    "arn:aws:rds:eu-west-1:222233334444:db:orders-db",
                ),
                ObjectRef("rds_instance", "222233334444", "eu-west-1", "orders-db-2"),
            ],
        ),
        (
            "rds.amazonaws.com",
            "CreateDBInstance",
            {
                "dBInstanceIdentifier": "aurora-1",
                "dBClusterIdentifier": "Orders",
                "engine": "aurora-mysql",
            },
            None,
            [
                ObjectRef("rds_instance", "222233334444", "eu-west-1", "aurora-1"),
                ObjectRef("rds_cluster", "222233334444", "eu-west-1", "orders"),
            ],
        ),
        (
            "rds.amazonaws.com",
            "DeleteDBCluster",
            {"dBClusterIdentifier": "orders", "skipFinalSnapshot": True},
            {
                "dBClusterArn": "arn:aws:rds:eu-west-1:222233334444:cluster:orders",
                "status": "deleting",
            },
            [
                ObjectRef(
                    "rds_cluster",
                    "222233334444",
                    "eu-west-1",
                    "arn:aws:rds:eu-west-1:222233334444:cluster:orders",
                )
            ],
        ),
        (
            "eks.amazonaws.com",
            "DeleteCluster",
            {"name": "platform"},
            {
                "cluster": {
                    "name": "platform",
                    "arn": "arn:aws:eks:eu-west-1:222233334444:cluster/platform",
                    "status": "DELETING",
                }
            },
            [
                ObjectRef(
                    "eks_cluster",
                    "222233334444",
                    "eu-west-1",
                    "arn:aws:eks:eu-west-1:222233334444:cluster/platform",
                )
            ],
        ),
        (
            "sso.amazonaws.com",
            "DeletePermissionSet",
            {
                "instanceArn": "arn:aws:sso:::instance/ssoins-72233af8ea2d1f14",
                "permissionSetArn": PS_ARN,
            },
            None,
            [ObjectRef("permission_set", "", "", PS_ARN)],
        ),
        (
            "sso.amazonaws.com",
            "CreateAccountAssignment",
            {
                "instanceArn": "arn:aws:sso:::instance/ssoins-72233af8ea2d1f14",
                "targetId": "222233334444",
                "targetType": "AWS_ACCOUNT",
                "permissionSetArn": PS_ARN,
                "principalType": "USER",
                "principalId": "94e80458-9021-70ea-08fa-c3a10a1d8a92",
            },
            None,
            [ObjectRef("account_assignment", "222233334444", "", PS_ARN)],
        ),
        (
            "identitystore.amazonaws.com",
            "CreateGroup",
            {"identityStoreId": "d-906791299c", "displayName": "Data"},
            {"groupId": GROUP_ID, "identityStoreId": "d-906791299c"},
            [ObjectRef("idc_group", "", "", GROUP_ID)],
        ),
        (
            "identitystore.amazonaws.com",
            "DeleteGroup",
            {"identityStoreId": "d-906791299c", "groupId": GROUP_ID},
            None,
            [ObjectRef("idc_group", "", "", GROUP_ID)],
        ),
        (
            "sso-directory.amazonaws.com",
            "DeleteGroup",
            {"identityStoreId": "d-906791299c", "groupId": GROUP_ID},
            None,
            [ObjectRef("idc_group", "", "", GROUP_ID)],
        ),
        (
            "identitystore.amazonaws.com",
            "CreateGroupMembership",
            {"identityStoreId": "d-906791299c", "groupId": GROUP_ID, "memberId": {"userId": "u-1"}},
            {"membershipId": "m-1", "identityStoreId": "d-906791299c"},
            [ObjectRef("idc_group_membership", "", "", GROUP_ID)],
        ),
        # Only a membership id: every group's members are re-read.
        (
            "identitystore.amazonaws.com",
            "DeleteGroupMembership",
            {
                "identityStoreId": "d-906791299c",
                "membershipId": "a1b2c3d4-1111-2222-3333-444455556666",
            },
            None,
            [ObjectRef("idc_group_membership")],
        ),
        (
            "sso-directory.amazonaws.com",
            "RemoveMemberFromGroup",
            {"identityStoreId": "d-906791299c", "groupId": GROUP_ID, "member": {"memberId": "u-1"}},
            None,
            [ObjectRef("idc_group_membership", "", "", GROUP_ID)],
        ),
        (
            "organizations.amazonaws.com",
            "DeleteOrganizationalUnit",
            {"organizationalUnitId": "ou-ab12-cd34ef56"},
            None,
            [ObjectRef("ou", "", "", "ou-ab12-cd34ef56")],
        ),
        (
            "organizations.amazonaws.com",
            "CreateAccount",
            {"email": "a@example.com", "accountName": "new"},
            {
                "createAccountStatus": {
                    "state": "SUCCEEDED",
                    "accountId": "555566667777",
                    "id": "car-1",
                }
            },
            [ObjectRef("account", "", "", "555566667777")],
        ),
    ],
)
def test_events_without_a_sample_map_to_their_objects(
    source, name, request_, response, expected, app
):
    event = _event(source, name, request_, response)
    assert handlers.refs_for(event, app) == expected


def test_every_event_type_the_issue_lists_is_supported():
    listed = {
        "ec2": "RunInstances TerminateInstances StartInstances StopInstances CreateTags DeleteTags",
        "iam": "CreateRole DeleteRole UpdateAssumeRolePolicy TagRole UntagRole",
        "rds": "CreateDBInstance DeleteDBInstance ModifyDBInstance CreateDBCluster DeleteDBCluster",
        "eks": "CreateCluster DeleteCluster",
        "sso": "CreateAccountAssignment DeleteAccountAssignment CreatePermissionSet DeletePermissionSet",
        "identitystore": "CreateGroupMembership DeleteGroupMembership CreateGroup DeleteGroup",
        "sso-directory": "CreateGroup DeleteGroup AddMemberToGroup RemoveMemberFromGroup",
        "organizations": "CreateAccount CreateAccountResult MoveAccount RemoveAccountFromOrganization "
        "CreateOrganizationalUnit DeleteOrganizationalUnit",
    }
    for service, names in listed.items():
        for name in names.split():
            assert (f"{service}.amazonaws.com", name) in handlers.HANDLERS, (service, name)


def test_an_app_that_does_not_manage_identity_center_ignores_its_events(app):
    app.identity_center_management = False
    event = parse_message((SAMPLES / "sso-directory.amazonaws.com-CreateGroup.json").read_text())
    assert handlers.refs_for(event, app) == []


def test_an_app_that_does_not_manage_member_accounts_ignores_their_events(app):
    app.organization_management = False
    event = parse_message((SAMPLES / "ec2.amazonaws.com-CreateTags.json").read_text())
    assert handlers.refs_for(event, app) == []
    org_event = parse_message(
        (SAMPLES / "organizations.amazonaws.com-MoveAccount.json").read_text()
    )
    assert handlers.refs_for(org_event, app) == [ObjectRef("account", "", "", "549271133721")]


def test_events_in_regions_the_app_does_not_sync_are_ignored(app):
    app.regions = ["eu-west-1"]
    event = parse_message((SAMPLES / "ec2.amazonaws.com-TerminateInstances.json").read_text())
    assert handlers.refs_for(event, app) == []
    app.regions = ["us-west-2"]
    assert len(handlers.refs_for(event, app)) == 1


def test_an_event_goes_to_the_app_whose_organization_holds_its_account(app):
    other = AwsApp.objects.create(name="Other organization", management_account_id="999999999999")
    Resource.objects.create(
        app=other,
        type=ResourceType.ACCOUNT,
        remote_id="062000000000",
        name="member",
        account_id="062000000000",
    )
    # A member account in the other app's inventory.
    member_event = parse_message((SAMPLES / "ec2.amazonaws.com-CreateTags.json").read_text())
    assert handlers.find_app(member_event, app) == other
    # The other app's management account.
    management_event = _event(
        "ec2.amazonaws.com", "CreateTags", {}, recipientAccountId="999999999999"
    )
    assert handlers.find_app(management_event, app) == other
    # An account no app knows, and no usable account at all: the queue's app.
    stranger = parse_message((SAMPLES / "ec2.amazonaws.com-TerminateInstances.json").read_text())
    assert handlers.find_app(stranger, app) == app
    placeholder = parse_message(
        (SAMPLES / "sso-directory.amazonaws.com-CreateGroup.json").read_text()
    )
    assert handlers.find_app(placeholder, other) == other
    # A deleted account row no longer claims the account.
    Resource.objects.filter(app=other).update(deleted_at=timezone.now())
    assert handlers.find_app(member_event, app) == app
