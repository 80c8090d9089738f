"""The managed trust statement is edited without touching anything the role's owner wrote."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from aws_integration.trust_policy_editor import (
    TrustPolicyError,
    TrustPolicyTooLarge,
    add_subject,
    binds_session_names,
    check_size,
    parse_policy,
    remove_subject,
    serialise,
    session_name_for,
    subjects_in,
    without_other_issuers,
)
from tests.fixtures import shared_samples

SAMPLES = shared_samples("trust-policies")
SAMPLE_FILES = sorted(SAMPLES.glob("*.json")) if SAMPLES.is_dir() else []

PROVIDER_ARN = "arn:aws:iam::111122223333:oidc-provider/idp.example.com"
ISSUER = "idp.example.com"
CLIENT_ID = "portcullis-client"
ALICE = "alice-subject"
BOB = "bob-subject"

samples = pytest.mark.skipif(not SAMPLE_FILES, reason=f"no trust policy samples found in {SAMPLES}")


def grant(policy: Any, subject: str = ALICE) -> dict[str, Any]:
    return add_subject(
        policy, provider_arn=PROVIDER_ARN, issuer_host=ISSUER, client_id=CLIENT_ID, subject=subject
    )


def revoke(policy: Any, subject: str = ALICE) -> dict[str, Any]:
    return remove_subject(policy, subject=subject, issuer_host=ISSUER)


def as_list(statement: Any) -> list[Any]:
    return [statement] if isinstance(statement, dict) else statement


def managed(policy: dict[str, Any]) -> dict[str, Any]:
    found = [s for s in as_list(policy["Statement"]) if s.get("Sid") == "PortcullisManaged"]
    assert len(found) == 1
    return found[0]


def load(path: Path) -> dict[str, Any]:
    return parse_policy(path.read_text())


@pytest.fixture(params=SAMPLE_FILES, ids=lambda path: path.stem)
def sample(request: pytest.FixtureRequest) -> Path:
    return request.param


@samples
def test_it_finds_the_samples_listed_in_sources() -> None:
    listed = (SAMPLES / "SOURCES.md").read_text()
    assert len(SAMPLE_FILES) == 25
    assert all(f"`{path.name}`" in listed for path in SAMPLE_FILES)


@samples
def test_adding_then_removing_a_subject_gives_back_the_original(sample: Path) -> None:
    original = load(sample)

    assert revoke(grant(original)) == original
    assert serialise(revoke(grant(original))) == serialise(original)


@samples
def test_adding_keeps_every_original_statement_unchanged_and_in_order(sample: Path) -> None:
    original = load(sample)

    granted = grant(original)

    kept = [s for s in as_list(granted["Statement"]) if s.get("Sid") != "PortcullisManaged"]
    assert [json.dumps(s) for s in kept] == [json.dumps(s) for s in as_list(original["Statement"])]
    assert {k: v for k, v in granted.items() if k != "Statement"} == {
        k: v for k, v in original.items() if k != "Statement"
    }
    assert managed(granted) == {
        "Sid": "PortcullisManaged",
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER_ARN},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {
                f"{ISSUER}:aud": CLIENT_ID,
                f"{ISSUER}:sub": [ALICE],
                # The holder may name the session only after the subject of their token.
                "sts:RoleSessionName": "${" + ISSUER + ":sub}",
            },
        },
    }


@samples
def test_adding_twice_is_the_same_as_adding_once(sample: Path) -> None:
    once = grant(load(sample))

    assert grant(once) == once


@samples
def test_it_does_not_change_the_document_it_is_given(sample: Path) -> None:
    original = load(sample)
    before = json.dumps(original)

    revoke(grant(original))
    grant(original)

    assert json.dumps(original) == before


def test_removing_an_absent_subject_returns_an_equal_document() -> None:
    policy = grant({"Version": "2012-10-17", "Statement": []})

    assert revoke(policy, BOB) == policy
    assert revoke({"Version": "2012-10-17", "Statement": []}) == {
        "Version": "2012-10-17",
        "Statement": [],
    }


def test_it_reads_the_url_encoded_document_iam_returns() -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}],
    }
    encoded = quote(json.dumps(document), safe="")
    assert encoded.startswith("%7B")

    assert parse_policy(encoded) == document
    assert managed(grant(encoded))["Condition"]["StringEquals"][f"{ISSUER}:sub"] == [ALICE]


def test_it_refuses_a_document_that_is_not_a_json_object() -> None:
    with pytest.raises(TrustPolicyError, match="not valid JSON"):
        parse_policy('{"Version": ')
    with pytest.raises(TrustPolicyError, match="JSON object, not list"):
        parse_policy("[]")


def test_a_statement_object_becomes_a_list_only_when_a_second_statement_is_added() -> None:
    owner = {"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole"}
    policy = {"Version": "2012-10-17", "Statement": owner}

    granted = grant(policy)

    assert isinstance(granted["Statement"], list)
    assert owner in granted["Statement"]
    assert revoke(granted)["Statement"] == owner


def test_a_statement_object_that_is_the_managed_one_stays_an_object() -> None:
    policy = {"Version": "2012-10-17", "Statement": managed(grant({"Statement": []}))}

    granted = grant(policy, BOB)

    assert isinstance(granted["Statement"], dict)
    assert subjects_in(granted, ISSUER) == {ALICE, BOB}


def test_a_list_of_one_statement_stays_a_list_after_revoking() -> None:
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*"}]}

    assert revoke(grant(policy)) == policy


def test_removing_one_of_two_subjects_keeps_the_other() -> None:
    policy = grant(grant({"Version": "2012-10-17", "Statement": []}, BOB), ALICE)
    assert managed(policy)["Condition"]["StringEquals"][f"{ISSUER}:sub"] == [ALICE, BOB]

    revoked = revoke(policy, ALICE)

    assert subjects_in(revoked, ISSUER) == {BOB}
    assert managed(revoked)["Condition"]["StringEquals"][f"{ISSUER}:aud"] == CLIENT_ID


def test_removing_the_last_subject_removes_the_managed_statement() -> None:
    policy = revoke(grant({"Version": "2012-10-17", "Statement": []}))

    assert policy == {"Version": "2012-10-17", "Statement": []}


def test_it_refuses_a_policy_with_two_managed_statements() -> None:
    statement = managed(grant({"Statement": []}))

    with pytest.raises(TrustPolicyError, match="2 statements with Sid 'PortcullisManaged'"):
        grant({"Statement": [statement, statement]})


def test_subjects_in_lists_who_the_managed_statement_admits() -> None:
    policy = grant(grant({"Statement": [{"Effect": "Allow", "Principal": "*"}]}), BOB)

    assert subjects_in(policy, ISSUER) == {ALICE, BOB}
    assert subjects_in(policy, "other.example.com") == set()
    assert subjects_in({"Statement": {"Effect": "Allow", "Principal": "*"}}, ISSUER) == set()


def test_subjects_in_ignores_subjects_in_statements_portcullis_does_not_own() -> None:
    owner = {
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER_ARN},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{ISSUER}:sub": "someone-else"}},
    }

    assert subjects_in({"Statement": [owner]}, ISSUER) == set()
    assert subjects_in(grant({"Statement": [owner]}), ISSUER) == {ALICE}


def test_serialise_writes_compact_json() -> None:
    assert serialise({"Version": "2012-10-17", "Statement": []}) == (
        '{"Version":"2012-10-17","Statement":[]}'
    )


def test_it_refuses_a_policy_over_the_size_limit_with_a_clear_message() -> None:
    policy: dict[str, Any] = {"Version": "2012-10-17", "Statement": []}
    # Subjects as long as the UUIDs many identity providers use.
    for number in range(60):
        policy = grant(policy, f"{number:08d}-0000-4000-8000-000000000000")
    text = serialise(policy)
    assert len(text) > 2048

    with pytest.raises(TrustPolicyTooLarge) as raised:
        check_size(text, limit=2048)

    assert raised.value.size == len(text)
    assert raised.value.limit == 2048
    message = str(raised.value)
    assert f"{len(text):,} characters" in message
    assert "2,048" in message
    assert "4,096" in message


def test_it_accepts_a_policy_at_the_size_limit() -> None:
    check_size("x" * 2048, limit=2048)
    with pytest.raises(TrustPolicyTooLarge):
        check_size("x" * 2049, limit=2048)


# Session names -------------------------------------------------------------------------------
# As versions before the session-name binding wrote the statement.
OLD_SHAPE = {
    "Sid": "PortcullisManaged",
    "Effect": "Allow",
    "Principal": {"Federated": PROVIDER_ARN},
    "Action": "sts:AssumeRoleWithWebIdentity",
    "Condition": {
        "StringEquals": {f"{ISSUER}:aud": CLIENT_ID, f"{ISSUER}:sub": [ALICE, "auth0|bob"]}
    },
}
OWNER = {
    "Effect": "Allow",
    "Principal": {"Service": "ec2.amazonaws.com"},
    "Action": "sts:AssumeRole",
}


def bound_names(policy: dict[str, Any], subject: str) -> set[str]:
    """The session names the policy lets the subject's holder use; "*" for any."""
    names = set()
    for statement in as_list(policy["Statement"]):
        if statement.get("Effect") != "Allow" or "Federated" not in statement.get("Principal", {}):
            continue
        equals = statement.get("Condition", {}).get("StringEquals", {})
        admitted = equals.get(f"{ISSUER}:sub")
        if subject not in (admitted if isinstance(admitted, list) else [admitted]):
            continue
        name = equals.get("sts:RoleSessionName", "*")
        names.add(subject if name == "${" + ISSUER + ":sub}" else name)
    return names


def test_a_subject_that_cannot_be_a_session_name_gets_a_statement_binding_a_derived_name():
    policy = grant(grant({"Version": "2012-10-17", "Statement": [OWNER]}), "auth0|bob")

    assert bound_names(policy, ALICE) == {ALICE}
    name = session_name_for("auth0|bob")
    assert bound_names(policy, "auth0|bob") == {name}
    assert re.fullmatch(r"portcullis-[0-9a-f]{16}", name)
    assert subjects_in(policy, ISSUER) == {ALICE, "auth0|bob"}
    assert as_list(policy["Statement"])[0] == OWNER  # the owner's statement stays first

    assert bound_names(revoke(policy, "auth0|bob"), "auth0|bob") == set()
    assert revoke(revoke(policy, "auth0|bob")) == {"Version": "2012-10-17", "Statement": [OWNER]}


@pytest.mark.parametrize(
    ("subject", "usable"),
    [
        ("00u1abcd2EFGH3ijk4x7", True),  # Okta
        ("f3b9c1de-1234-4abc-9def-0123456789ab", True),  # Keycloak, a UUID
        ("AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", True),  # Entra ID
        ("auth0|5f7c8ec7c33c6c004bbafe82", False),
        ("a" * 65, False),
        ("x", False),
        ("user@example.com", True),
        ("ünïcode", False),
        ("portcullis-0123456789abcdef", False),  # the namespace of derived names
    ],
)
def test_the_session_name_is_the_subject_where_aws_accepts_it(subject: str, usable: bool):
    name = session_name_for(subject)

    assert (name == subject) is usable
    assert re.fullmatch(r"[A-Za-z0-9_+=,.@-]{2,64}", name)
    assert bound_names(grant({"Statement": []}, subject), subject) == {name}


def test_a_statement_of_the_older_shape_is_upgraded_by_the_next_grant_or_revoke():
    policy = {"Version": "2012-10-17", "Statement": [OWNER, OLD_SHAPE]}
    assert bound_names(policy, ALICE) == {"*"}  # any session name: not deniable by name
    assert subjects_in(policy, ISSUER) == {ALICE, "auth0|bob"}

    for upgraded in (grant(policy, BOB), revoke(policy, ALICE)):
        for subject in subjects_in(upgraded, ISSUER):
            assert bound_names(upgraded, subject) == {session_name_for(subject)}
        assert as_list(upgraded["Statement"])[0] == OWNER
    assert subjects_in(revoke(policy, ALICE), ISSUER) == {"auth0|bob"}


def test_about_forty_uuid_holders_fit_the_default_trust_policy_quota():
    policy: dict[str, Any] = {"Version": "2012-10-17", "Statement": [OWNER]}
    holders = 0
    while True:
        more = grant(policy, f"{holders:08d}-0000-4000-8000-000000000000")
        if len(serialise(more)) > 2048:
            break
        policy, holders = more, holders + 1
    # The binding costs one condition per statement, not one statement per holder.
    assert holders >= 40


def test_only_statements_binding_each_subject_to_its_own_name_count_as_binding():
    bound = grant(grant({"Version": "2012-10-17", "Statement": [OWNER]}), "auth0|bob")
    assert binds_session_names(bound, ISSUER)
    assert binds_session_names({"Version": "2012-10-17", "Statement": [OWNER]}, ISSUER)
    assert not binds_session_names({"Statement": [OWNER, OLD_SHAPE]}, ISSUER)

    # A per-subject statement (edited by someone else) naming another subject, or binding
    # a name other than the one derived from its subject, lets holders use names a revoke
    # would not deny.
    for field, value in ((f"{ISSUER}:sub", ALICE), ("sts:RoleSessionName", "chosen-name")):
        edited = json.loads(json.dumps(bound))
        (statement,) = [
            s for s in edited["Statement"] if s.get("Sid", "").startswith("PortcullisManagedS")
        ]
        statement["Condition"]["StringEquals"][field] = value
        assert not binds_session_names(edited, ISSUER)


def iam_value(value: str, token_subject: str) -> str:
    """A condition value as IAM reads it for a token of this subject: ${$}, ${*} and ${?}
    are the characters themselves, ${<issuer>:sub} the token's subject."""
    specials = {"${$}": "$", "${*}": "*", "${?}": "?", "${" + ISSUER + ":sub}": token_subject}
    return re.sub(r"\$\{[^}]*\}", lambda m: specials.get(m.group(0), "\0"), value)


def admitted_subjects(policy: dict[str, Any], token_subject: str) -> bool:
    for statement in as_list(policy["Statement"]):
        equals = statement.get("Condition", {}).get("StringEquals", {})
        admitted = equals.get(f"{ISSUER}:sub")
        if statement.get("Effect") == "Allow" and any(
            iam_value(value, token_subject) == token_subject
            for value in (admitted if isinstance(admitted, list) else [admitted or ""])
        ):
            return True
    return False


@pytest.mark.parametrize(
    "subject",
    ["${" + ISSUER + ":sub}", "a${*}b", "$weird{x}"],
    ids=["variable", "escape", "dollar"],
)
def test_a_subject_holding_policy_variable_syntax_admits_that_subject_only(subject: str):
    policy = grant({"Version": "2012-10-17", "Statement": [OWNER]}, subject)

    assert admitted_subjects(policy, subject)
    assert not admitted_subjects(policy, "mallory-subject")
    assert not admitted_subjects(policy, "a*b")
    assert subjects_in(policy, ISSUER) == {subject}
    assert revoke(policy, subject) == {"Version": "2012-10-17", "Statement": [OWNER]}


def test_a_former_issuers_statements_go_and_every_other_statement_stays():
    old = add_subject(
        {"Version": "2012-10-17", "Statement": []},
        provider_arn="arn:aws:iam::111122223333:oidc-provider/idp.old.example.com",
        issuer_host="idp.old.example.com",
        client_id=CLIENT_ID,
        subject="auth0|old subject",  # a statement of its own, Sid PortcullisManagedSubject...
    )
    old = add_subject(
        old,
        provider_arn="arn:aws:iam::111122223333:oidc-provider/idp.old.example.com",
        issuer_host="idp.old.example.com",
        client_id=CLIENT_ID,
        subject="old-subject",
    )
    owners = [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        },
        {  # the owner's own trust in another provider, under a Sid that is not ours
            "Sid": "OwnersOwnProvider",
            "Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/token.ci.example"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"token.ci.example:sub": "repo:acme/app"}},
        },
    ]
    policy = grant({"Version": "2012-10-17", "Statement": owners + old["Statement"]})
    assert len(as_list(policy["Statement"])) == 3  # a grant rewrites ours for this issuer

    mixed = {"Version": "2012-10-17", "Statement": owners + old["Statement"] + [managed(policy)]}
    mixed["Statement"][-1] = {**managed(policy), "Sid": "PortcullisManagedSubject" + "0" * 16}
    kept = without_other_issuers(mixed, ISSUER)

    assert kept["Statement"] == owners + [mixed["Statement"][-1]]
    assert subjects_in(kept, ISSUER) == {ALICE}
    assert "old" not in json.dumps(kept)
    assert without_other_issuers(kept, ISSUER) == kept
    only_ours = without_other_issuers(old, ISSUER)
    assert only_ours["Statement"] == []
