"""Identity Center: users, groups, memberships, permission sets and account assignments."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_integration import clients
from demo.seed.base import (
    STANDIN_CREDENTIALS,
    Person,
    SeededAccount,
    SeededAssignment,
    SeedError,
    SeedSize,
    requestable_tag,
)

_GROUP_NAMES = ("Engineering", "Data", "Security", "Support", "Finance", "Platform", "SRE")
_GIVEN_NAMES = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery")
_FAMILY_NAMES = ("Smith", "Garcia", "Chen", "Okafor", "Novak", "Silva", "Kowalski", "Haddad")
# (name, AWS managed policy name under path "/" or None for an inline policy, session length)
_PERMISSION_SETS = (
    ("AdministratorAccess", "AdministratorAccess", "PT1H"),
    ("ReadOnlyAccess", "ReadOnlyAccess", "PT8H"),
    ("PowerUserAccess", "PowerUserAccess", "PT4H"),
    ("SecurityAudit", "SecurityAudit", "PT8H"),
    ("DatabaseAdministrator", None, "PT2H"),
    ("SupportAccess", "AWSSupportAccess", "PT8H"),
    ("BillingReadOnly", "AWSBillingReadOnlyAccess", "PT8H"),
    ("EC2ReadOnly", "AmazonEC2ReadOnlyAccess", "PT8H"),
)


def seed_identity_center(
    pool: ThreadPoolExecutor,
    session: Any,
    region: str,
    size: SeedSize,
    accounts: list[SeededAccount],
    people: Sequence[Person],
    *,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Fills the management account's Identity Center instance; returns the SeedResult
    fields it owns. User and membership chunks run on ``pool``."""
    sso = clients.client("sso-admin", session=session, region=region)
    instances = sso.list_instances()["Instances"]
    if not instances:
        raise SeedError(f"The stand-in has no Identity Center instance in {region}.")
    instance_arn = instances[0]["InstanceArn"]
    store_id = instances[0]["IdentityStoreId"]
    store = clients.client("identitystore", session=session, region=region)

    group_names = list(_GROUP_NAMES[: size.idc_groups]) + [
        f"Team {n:03d}" for n in range(len(_GROUP_NAMES), size.idc_groups)
    ]
    for person in people:
        unknown = set(person.groups) - set(group_names)
        if unknown:
            raise SeedError(
                f"{person.email} is to join {sorted(unknown)}, which this seed size does not "
                f"create (groups: {group_names})."
            )
    groups: dict[str, str] = {}
    for name in group_names:
        groups[name] = store.create_group(
            IdentityStoreId=store_id, DisplayName=name, Description=f"The {name} team"
        )["GroupId"]

    # Users in parallel chunks: 500 users one by one are the slowest part of LARGE.
    wanted = [(p.email, p.given_name, p.family_name) for p in people] + _generated_users(
        size.idc_users, taken={p.email for p in people}
    )
    chunks = [wanted[i : i + 50] for i in range(0, len(wanted), 50)]
    users: dict[str, str] = {}
    for chunk_users in pool.map(lambda chunk: _create_users(region, store_id, chunk), chunks):
        users.update(chunk_users)

    memberships: list[tuple[str, str]] = []
    for person in people:
        memberships += [(groups[g], users[person.email]) for g in person.groups]
    generated = [email for email, _, _ in wanted[len(people) :]]
    for index, email in enumerate(generated):
        for k in range(size.memberships_per_user):
            group_name = group_names[(index * size.memberships_per_user + k) % len(group_names)]
            memberships.append((groups[group_name], users[email]))
    membership_chunks = [memberships[i : i + 200] for i in range(0, len(memberships), 200)]
    list(
        pool.map(
            lambda chunk: _create_memberships(region, store_id, chunk),
            membership_chunks,
        )
    )
    say(f"Created {len(users)} Identity Center users, {len(groups)} groups")

    permission_sets = _create_permission_sets(sso, instance_arn, size.permission_sets)
    assignments: list[SeededAssignment] = []
    ps_arns = list(permission_sets.values())
    group_ids = list(groups.values())
    for index, account in enumerate(accounts):
        for k in range(size.assignments_per_account):
            assignments.append(
                SeededAssignment(
                    account_id=account.account_id,
                    permission_set_arn=ps_arns[(index + k) % len(ps_arns)],
                    principal_type="GROUP",
                    principal_id=group_ids[(index + k) % len(group_ids)],
                )
            )
    if accounts and users and ps_arns and size.assignments_per_account:
        # One direct user assignment: long-lived access that reviews should find.
        first_generated = users[generated[0]] if generated else next(iter(users.values()))
        assignments.append(
            SeededAssignment(
                account_id=accounts[0].account_id,
                permission_set_arn=permission_sets.get("ReadOnlyAccess", ps_arns[0]),
                principal_type="USER",
                principal_id=first_generated,
            )
        )
    for assignment in assignments:
        status = sso.create_account_assignment(
            InstanceArn=instance_arn,
            TargetId=assignment.account_id,
            TargetType="AWS_ACCOUNT",
            PermissionSetArn=assignment.permission_set_arn,
            PrincipalType=assignment.principal_type,
            PrincipalId=assignment.principal_id,
        )["AccountAssignmentCreationStatus"]
        if status["Status"] == "FAILED":
            raise SeedError(f"Account assignment failed: {status.get('FailureReason')}")
    provisioned = sorted({a.permission_set_arn for a in assignments})
    for arn in provisioned:
        sso.provision_permission_set(
            InstanceArn=instance_arn, PermissionSetArn=arn, TargetType="ALL_PROVISIONED_ACCOUNTS"
        )
    say(f"Created {len(permission_sets)} permission sets and {len(assignments)} assignments")
    return {
        "instance_arn": instance_arn,
        "identity_store_id": store_id,
        "permission_sets": permission_sets,
        "groups": groups,
        "users": users,
        "memberships": memberships,
        "assignments": assignments,
        "provisioned_permission_sets": provisioned,
    }


def _generated_users(count: int, *, taken: set[str]) -> list[tuple[str, str, str]]:
    users: list[tuple[str, str, str]] = []
    n = 0
    while len(users) < count:
        given = _GIVEN_NAMES[n % len(_GIVEN_NAMES)]
        family = _FAMILY_NAMES[(n // len(_GIVEN_NAMES)) % len(_FAMILY_NAMES)]
        round_ = n // (len(_GIVEN_NAMES) * len(_FAMILY_NAMES))
        suffix = str(round_ + 1) if round_ else ""
        email = f"{given.lower()}.{family.lower()}{suffix}@corp.example"
        if email not in taken:
            users.append((email, given, family))
        n += 1
    return users


def _store_client(region: str) -> Any:
    # Runs on pool threads: a boto3 session must not be shared between threads.
    return clients.client(
        "identitystore", session=clients.make_session(STANDIN_CREDENTIALS, region), region=region
    )


def _create_users(region: str, store_id: str, chunk: list[tuple[str, str, str]]) -> dict[str, str]:
    store = _store_client(region)
    created: dict[str, str] = {}
    for email, given, family in chunk:
        created[email] = store.create_user(
            IdentityStoreId=store_id,
            UserName=email,
            DisplayName=f"{given} {family}",
            Name={"GivenName": given, "FamilyName": family},
            Emails=[{"Value": email, "Type": "work", "Primary": True}],
        )["UserId"]
    return created


def _create_memberships(region: str, store_id: str, chunk: list[tuple[str, str]]) -> None:
    store = _store_client(region)
    for group_id, user_id in chunk:
        store.create_group_membership(
            IdentityStoreId=store_id, GroupId=group_id, MemberId={"UserId": user_id}
        )


def _create_permission_sets(sso: Any, instance_arn: str, count: int) -> dict[str, str]:
    specs = list(_PERMISSION_SETS[:count]) + [
        (f"Team{n:02d}Access", None, "PT4H") for n in range(len(_PERMISSION_SETS), count)
    ]
    created: dict[str, str] = {}
    for name, managed_policy, duration in specs:
        arn = sso.create_permission_set(
            InstanceArn=instance_arn,
            Name=name,
            Description=f"{name} (seeded)",
            SessionDuration=duration,
            # Every seeded permission set is offered: the ingester's policy assigns only
            # permission sets tagged requestable.
            Tags=[
                {"Key": "seeded-by", "Value": "portcullis"},
                {"Key": requestable_tag(), "Value": "true"},
            ],
        )["PermissionSet"]["PermissionSetArn"]
        if managed_policy:
            sso.attach_managed_policy_to_permission_set(
                InstanceArn=instance_arn,
                PermissionSetArn=arn,
                ManagedPolicyArn=f"arn:aws:iam::aws:policy/{managed_policy}",
            )
        else:
            sso.put_inline_policy_to_permission_set(
                InstanceArn=instance_arn,
                PermissionSetArn=arn,
                InlinePolicy=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["rds:Describe*", "rds-db:connect"],
                                "Resource": "*",
                            }
                        ],
                    }
                ),
            )
        created[name] = arn
    return created
