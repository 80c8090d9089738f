"""A stand-in for CloudTrail → EventBridge → SQS, which the stand-in AWS (moto) lacks.

Each change is made for real in the stand-in AWS through boto3; then the CloudTrail record
AWS would write for that call is built (with the real ids, in the shapes of public
CloudTrail samples) and wrapped in the EventBridge envelope an EventBridge → SQS rule
delivers, and sent to an app's events queue, where the poller picks it up as it would a
real one. It only ever talks to the stand-in: without AWS_ENDPOINT_URL it refuses.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from access.choices import ResourceType
from access.models import Resource
from aws_integration import clients, validators
from aws_integration.models import AwsApp
from demo import seed

USER_AGENT = "portcullis-standin-change"
# Narrow on purpose: moto answers a broad image filter slowly (see the seed's AMI lookup).
AMI_NAME_PATTERNS = ("al2023-ami-2023*-x86_64", "amzn2-ami-hvm-*-x86_64-gp2")


class StandInChangeError(Exception):
    """A change could not be made or sent; the message says what to do about it."""


def envelope(
    record: dict[str, Any],
    *,
    account_id: str,
    region: str,
    request: dict[str, Any] | None = None,
    response: Any = ...,
    **fields: Any,
) -> dict[str, Any]:
    """An EventBridge envelope around a copy of the CloudTrail ``record``, made to
    describe this change: its account, region, time, ids and (when given) request and
    response (``response=None`` for a call that answers nothing). Any other record field
    is set from ``fields``. An error the record carried is dropped: this call succeeded."""
    record = copy.deepcopy(record.get("detail", record))
    record.update(
        recipientAccountId=account_id,
        awsRegion=region,
        eventTime=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        eventID=str(uuid.uuid4()),
        **fields,
    )
    for key in ("errorCode", "errorMessage"):
        record.pop(key, None)
    if isinstance(record.get("userIdentity"), dict):
        record["userIdentity"]["accountId"] = account_id
    if request is not None:
        record["requestParameters"] = request
    if response is not ...:
        record["responseElements"] = response
    source = record["eventSource"].removesuffix(".amazonaws.com")
    detail_type = (
        "AWS Service Event via CloudTrail"
        if record.get("eventType") == "AwsServiceEvent"
        else "AWS API Call via CloudTrail"
    )
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": f"aws.{source}",
        "account": account_id,
        "time": record["eventTime"],
        "region": region,
        "resources": [],
        "detail": record,
    }


def api_call(
    source: str,
    name: str,
    *,
    account_id: str,
    region: str,
    request: dict[str, Any],
    response: Any,
    role_name: str = seed.MEMBER_ACCOUNT_ROLE,
) -> dict[str, Any]:
    """The EventBridge event of a successful API call ``name`` to ``source`` (e.g.
    "ec2.amazonaws.com"), made by a session of ``role_name`` in ``account_id``."""
    request_id = str(uuid.uuid4())
    record = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": f"AROASTANDIN{account_id}:{USER_AGENT}",
            "arn": f"arn:aws:sts::{account_id}:assumed-role/{role_name}/{USER_AGENT}",
            "accountId": account_id,
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": f"AROASTANDIN{account_id}",
                    "arn": f"arn:aws:iam::{account_id}:role/{role_name}",
                    "accountId": account_id,
                    "userName": role_name,
                },
                "attributes": {
                    "creationDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "mfaAuthenticated": "false",
                },
            },
        },
        "eventSource": source,
        "eventName": name,
        "sourceIPAddress": "127.0.0.1",
        "userAgent": USER_AGENT,
        "requestID": request_id,
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "eventCategory": "Management",
    }
    return envelope(
        record, account_id=account_id, region=region, request=request, response=response
    )


@dataclass
class Change:
    """A change made in the stand-in AWS and the event CloudTrail would have delivered."""

    summary: str
    event: dict[str, Any]
    ids: dict[str, str] = field(default_factory=dict)


class StandIn:
    """Makes changes in the stand-in AWS of ``app``'s organization and sends their events
    to ``app``'s queue."""

    def __init__(self, app: AwsApp) -> None:
        require_standin()
        if not app.sqs_queue_url:
            raise StandInChangeError(
                f"The app “{app.name}” has no SQS queue URL: set one on its admin page "
                "(the demo sets it at start-up) so that changes can be sent to it."
            )
        self.app = app
        self.region = (app.regions or [settings.AWS_DEFAULT_REGION])[0]

    # Sessions -------------------------------------------------------------------------
    def _session(self, account_id: str, region: str | None = None) -> Any:
        """An administrator's session in ``account_id``: the stand-in's own credentials in
        the management account, the organization's access role in a member account."""
        management = clients.make_session(seed.STANDIN_CREDENTIALS, region=region or self.region)
        if account_id == self.app.management_account_id:
            return management
        # Assumed with the stand-in's credentials, not whatever the shell has.
        credentials = clients.assume_role(
            f"arn:aws:iam::{account_id}:role/{seed.MEMBER_ACCOUNT_ROLE}",
            session_name=USER_AGENT,
            session=management,
        )
        return clients.make_session(credentials, region=region or self.region)

    def _client(self, service: str, account_id: str, region: str | None = None) -> Any:
        return clients.client(
            service, session=self._session(account_id, region), region=region or self.region
        )

    def _role(self, account_id: str) -> str:
        if account_id == self.app.management_account_id:
            return "Admin"
        return seed.MEMBER_ACCOUNT_ROLE

    def default_account(self) -> str:
        """The first member account of the organization (by name), where the demo's
        workloads are."""
        org = self._client("organizations", self.app.management_account_id)
        accounts = [
            a
            for page in org.get_paginator("list_accounts").paginate()
            for a in page["Accounts"]
            if a["Id"] != self.app.management_account_id and a.get("Status") == "ACTIVE"
        ]
        if not accounts:
            raise StandInChangeError(
                "The stand-in organization has no active member account: pass --account."
            )
        return min(accounts, key=lambda a: (a["Name"], a["Id"]))["Id"]

    def _instance_location(self, instance_id: str, account_id: str | None) -> tuple[str, str]:
        """The account and region of an instance: as given, else from the inventory."""
        row = (
            Resource.objects.filter(
                app=self.app, type=ResourceType.EC2_INSTANCE, remote_id=instance_id
            )
            .values_list("account_id", "region")
            .first()
        )
        if account_id:
            return account_id, (row[1] if row and row[1] else self.region)
        if row is None:
            raise StandInChangeError(
                f"The instance {instance_id} is not in the inventory of “{self.app.name}”: "
                "pass --account (and --region) to say where it is."
            )
        return row[0], row[1] or self.region

    # Changes --------------------------------------------------------------------------
    def run_instance(
        self, account_id: str | None = None, region: str | None = None, name: str = ""
    ) -> Change:
        account_id = account_id or self.default_account()
        region = region or self.region
        name = name or f"standin-{uuid.uuid4().hex[:6]}"
        ec2 = self._client("ec2", account_id, region)
        image_id = _image_id(ec2, region)
        instance = _call(
            f"launching an instance in {account_id} ({region})",
            lambda: ec2.run_instances(
                ImageId=image_id,
                InstanceType="t3.micro",
                MinCount=1,
                MaxCount=1,
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}
                ],
            ),
        )["Instances"][0]
        instance_id = instance["InstanceId"]
        event = api_call(
            "ec2.amazonaws.com",
            "RunInstances",
            account_id=account_id,
            region=region,
            role_name=self._role(account_id),
            request={
                "instancesSet": {"items": [{"imageId": image_id, "minCount": 1, "maxCount": 1}]},
                "instanceType": "t3.micro",
                "tagSpecificationSet": {
                    "items": [
                        {"resourceType": "instance", "tags": [{"key": "Name", "value": name}]}
                    ]
                },
            },
            response={
                "requestId": str(uuid.uuid4()),
                "reservationId": instance.get("ReservationId", ""),
                "ownerId": account_id,
                "instancesSet": {
                    "items": [
                        {
                            "instanceId": instance_id,
                            "imageId": image_id,
                            "instanceType": "t3.micro",
                            "currentState": {"code": 0, "name": "pending"},
                        }
                    ]
                },
            },
        )
        return Change(
            f"Launched instance {instance_id} ({name}) in account {account_id}, {region}.",
            event,
            {"instance_id": instance_id, "account_id": account_id, "region": region},
        )

    def terminate_instance(
        self, instance_id: str, account_id: str | None = None, region: str | None = None
    ) -> Change:
        account_id, found_region = self._instance_location(instance_id, account_id)
        region = region or found_region
        ec2 = self._client("ec2", account_id, region)
        answer = _call(
            f"terminating {instance_id} in {account_id} ({region})",
            lambda: ec2.terminate_instances(InstanceIds=[instance_id]),
        )
        items = [
            {
                "instanceId": i["InstanceId"],
                "currentState": {
                    "code": i["CurrentState"]["Code"],
                    "name": i["CurrentState"]["Name"],
                },
                "previousState": {
                    "code": i["PreviousState"]["Code"],
                    "name": i["PreviousState"]["Name"],
                },
            }
            for i in answer["TerminatingInstances"]
        ]
        event = api_call(
            "ec2.amazonaws.com",
            "TerminateInstances",
            account_id=account_id,
            region=region,
            role_name=self._role(account_id),
            request={"instancesSet": {"items": [{"instanceId": instance_id}]}},
            response={"requestId": str(uuid.uuid4()), "instancesSet": {"items": items}},
        )
        return Change(
            f"Terminated instance {instance_id} in account {account_id}, {region}.",
            event,
            {"instance_id": instance_id, "account_id": account_id, "region": region},
        )

    def tag_instance(
        self,
        instance_id: str,
        tags: dict[str, str],
        account_id: str | None = None,
        region: str | None = None,
    ) -> Change:
        if not tags:
            raise StandInChangeError("Give at least one tag as KEY=VALUE.")
        account_id, found_region = self._instance_location(instance_id, account_id)
        region = region or found_region
        ec2 = self._client("ec2", account_id, region)
        _call(
            f"tagging {instance_id} in {account_id} ({region})",
            lambda: ec2.create_tags(
                Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            ),
        )
        event = api_call(
            "ec2.amazonaws.com",
            "CreateTags",
            account_id=account_id,
            region=region,
            role_name=self._role(account_id),
            request={
                "resourcesSet": {"items": [{"resourceId": instance_id}]},
                "tagSet": {"items": [{"key": k, "value": v} for k, v in tags.items()]},
            },
            response={"requestId": str(uuid.uuid4()), "_return": True},
        )
        shown = ", ".join(f"{k}={v}" for k, v in tags.items())
        return Change(
            f"Tagged instance {instance_id} with {shown}.",
            event,
            {"instance_id": instance_id, "account_id": account_id, "region": region},
        )

    def create_role(self, name: str, account_id: str | None = None) -> Change:
        account_id = account_id or self.default_account()
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        )
        iam = self._client("iam", account_id)
        role = _call(
            f"creating the role {name} in {account_id}",
            lambda: iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust),
        )["Role"]
        event = api_call(
            "iam.amazonaws.com",
            "CreateRole",
            account_id=account_id,
            # IAM is global; CloudTrail records its calls in us-east-1.
            region="us-east-1",
            role_name=self._role(account_id),
            request={"roleName": name, "assumeRolePolicyDocument": trust},
            response={
                "role": {
                    "path": role.get("Path", "/"),
                    "roleName": role["RoleName"],
                    "roleId": role["RoleId"],
                    "arn": role["Arn"],
                    "createDate": datetime.now(UTC).strftime("%b %-d, %Y %-I:%M:%S %p"),
                    # CloudTrail answers the document URL-encoded.
                    "assumeRolePolicyDocument": quote(trust, safe=""),
                }
            },
        )
        return Change(
            f"Created role {role['Arn']}.",
            event,
            {"role_arn": role["Arn"], "account_id": account_id},
        )

    def add_group_member(self, group: str, user: str) -> Change:
        app = self.app
        if not (app.identity_store_id and app.identity_center_region):
            raise StandInChangeError(
                f"The app “{app.name}” has no identity store ID or Identity Center region."
            )
        region = app.identity_center_region
        store = self._client("identitystore", app.management_account_id, region)
        store_id = app.identity_store_id
        groups = [
            g
            for page in store.get_paginator("list_groups").paginate(IdentityStoreId=store_id)
            for g in page["Groups"]
            if group in (g.get("DisplayName"), g["GroupId"])
        ]
        if not groups:
            raise StandInChangeError(
                f"No Identity Center group named “{group}” in the identity store {store_id}."
            )
        users = [
            u
            for page in store.get_paginator("list_users").paginate(IdentityStoreId=store_id)
            for u in page["Users"]
            if user.lower()
            in {u.get("UserName", "").lower(), u["UserId"].lower()}
            | {e.get("Value", "").lower() for e in u.get("Emails", [])}
        ]
        if not users:
            raise StandInChangeError(
                f"No Identity Center user “{user}” (user name or email) in the identity "
                f"store {store_id}."
            )
        group_id, user_id = groups[0]["GroupId"], users[0]["UserId"]
        membership_id = _call(
            f"adding {user} to {group}",
            lambda: store.create_group_membership(
                IdentityStoreId=store_id, GroupId=group_id, MemberId={"UserId": user_id}
            ),
        )["MembershipId"]
        event = api_call(
            "identitystore.amazonaws.com",
            "CreateGroupMembership",
            account_id=app.management_account_id,
            region=region,
            role_name="Admin",
            request={
                "identityStoreId": store_id,
                "groupId": group_id,
                "memberId": {"userId": user_id},
            },
            response={"membershipId": membership_id, "identityStoreId": store_id},
        )
        return Change(
            f"Added {user} to the Identity Center group {groups[0].get('DisplayName', group)}.",
            event,
            {"membership_id": membership_id, "group_id": group_id, "user_id": user_id},
        )

    # Delivery -------------------------------------------------------------------------
    def send(self, change: Change) -> str:
        """Puts the change's event on the app's queue, as the EventBridge rule would;
        returns the SQS message id."""
        url = self.app.sqs_queue_url
        region = validators.queue_region(url) or settings.AWS_DEFAULT_REGION
        sqs = clients.client(
            "sqs",
            session=clients.make_session(seed.STANDIN_CREDENTIALS, region=region),
            region=region,
        )
        answer = _call(
            f"sending the event to {url}",
            lambda: sqs.send_message(QueueUrl=url, MessageBody=json.dumps(change.event)),
        )
        return str(answer["MessageId"])


def require_standin() -> str:
    """The stand-in's endpoint; refuses when none is set, so real AWS is never touched."""
    if not settings.AWS_ENDPOINT_URL:
        raise StandInChangeError(
            "AWS_ENDPOINT_URL is not set. standin_change only changes the stand-in AWS (the "
            "moto server `manage.py demo` starts, printed in its banner); it never touches "
            "real AWS. Set AWS_ENDPOINT_URL to the stand-in's URL, e.g. "
            "AWS_ENDPOINT_URL=http://127.0.0.1:5001."
        )
    return settings.AWS_ENDPOINT_URL


def _image_id(ec2: Any, region: str) -> str:
    for pattern in AMI_NAME_PATTERNS:
        images = ec2.describe_images(
            Owners=["amazon"], Filters=[{"Name": "name", "Values": [pattern]}]
        )["Images"]
        if images:
            return max(images, key=lambda i: (i.get("CreationDate", ""), i["Name"]))["ImageId"]
    raise StandInChangeError(f"The stand-in has no Amazon Linux machine image in {region}.")


def _call(what: str, call: Any) -> Any:
    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        raise StandInChangeError(f"The stand-in AWS refused {what}: {exc}") from exc
