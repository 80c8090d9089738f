"""Turns one SQS message body into a :class:`ParsedEvent`, or refuses it with
:class:`BadMessage`.

Accepted shapes:

- the EventBridge envelope an EventBridge → SQS rule delivers
  (``{"detail-type": "AWS API Call via CloudTrail", "account", "region", "detail": {…}}``),
  including service events (``"AWS Service Event via CloudTrail"``) and other EventBridge
  events (``"EC2 Instance State-change Notification"``), which keep their detail-type as name;
- a raw CloudTrail record, as found in a trail's ``Records`` array;
- either of those wrapped in an SNS notification (``{"Type": "Notification", "Message": "…"}``),
  for queues subscribed to a topic.

Real events are messy and are taken as they come: ``responseElements`` null or the string
``"None"``, account IDs that lost their leading zeros or carry placeholders, regions that are
placeholders, and times in several formats. What cannot be read is left empty rather than
refused; only a message that is not an event at all is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from dateutil import parser as dateutil_parser

from aws_integration import validators

# EventBridge delivers events of at most 256 KiB (SQS's own limit was the same until it rose
# to 1 MiB in 2025), so a larger body is not an event from the rule; it is refused before
# parsing, so a huge body costs nothing.
MAX_MESSAGE_BYTES = 256 * 1024

# Codes of BadMessage; each is a SyncIssue code (scope "events").
NOT_JSON = "not_json"
NOT_AN_EVENT = "not_an_event"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
OVERSIZED = "oversized"
NO_ACCOUNT = "no_account"

_CLOUDTRAIL_SUFFIX = "via CloudTrail"
# Keys of which a CloudTrail record has at least one; a JSON object with none of them (and
# no envelope) is something else put on the queue.
_CLOUDTRAIL_KEYS = frozenset(
    {
        "eventSource",
        "eventName",
        "eventVersion",
        "eventTime",
        "eventID",
        "eventType",
        "userIdentity",
        "requestParameters",
        "responseElements",
        "recipientAccountId",
        "awsRegion",
    }
)
# An epoch value above this is in milliseconds: 1e11 seconds is in the year 5138.
_EPOCH_MS_THRESHOLD = 1e11
_NULL_STRINGS = frozenset({"", "None", "null", "NULL", "none"})
_DIGITS = re.compile(r"^\d{1,12}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class BadMessage(Exception):
    """A message that is not a usable event. ``code`` is stable (it names the SyncIssue),
    ``reason`` says what was wrong in words an admin can act on."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class ParsedEvent:
    """One event, with the fields handlers need read out and normalised."""

    source: str  # eventSource, e.g. "ec2.amazonaws.com"
    name: str  # eventName, e.g. "RunInstances"
    event_type: str = "AwsApiCall"  # AwsApiCall, AwsServiceEvent, or an EventBridge detail-type
    event_id: str = ""
    time: datetime | None = None
    account_id: str = ""  # 12 digits, or "" when no field held a usable account ID
    region: str = ""  # a region name, or "" when missing or a placeholder
    request: dict[str, Any] = field(default_factory=dict)  # requestParameters
    response: dict[str, Any] = field(default_factory=dict)  # responseElements
    service_details: dict[str, Any] = field(default_factory=dict)  # serviceEventDetails
    error_code: str = ""
    error_message: str = ""
    read_only: bool | None = None
    enveloped: bool = False
    # The account ID values seen when none was usable, to name them in messages.
    account_id_seen: str = ""
    region_seen: str = ""
    detail: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def service(self) -> str:
        """The service part of the source: "ec2", "sso-directory", "identitystore"."""
        return self.source.removesuffix(".amazonaws.com")

    @property
    def failed(self) -> bool:
        """A call AWS refused: it changed nothing."""
        return bool(self.error_code)

    @property
    def trust_policy(self) -> dict[str, Any] | None:
        """The role trust policy an IAM event sets, decoded, with Statement as a list."""
        if self.name == "UpdateAssumeRolePolicy":
            return decode_policy_document(self.request.get("policyDocument"))
        document = decode_policy_document(self.request.get("assumeRolePolicyDocument"))
        if document is None:
            role = self.response.get("role")
            if isinstance(role, Mapping):
                document = decode_policy_document(role.get("assumeRolePolicyDocument"))
        return document


def parse_message(body: str) -> ParsedEvent:
    """Parses an SQS message body; raises :class:`BadMessage` when it is not an event."""
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise BadMessage(
            OVERSIZED,
            f"The message is {size:,} bytes, over the {MAX_MESSAGE_BYTES:,} bytes (256 KiB) "
            "an EventBridge event can be; it was not read.",
        )
    data = _load_json(body)
    if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
        # SNS → SQS without raw message delivery: the event is a JSON string inside.
        inner = data["Message"]
        if not isinstance(inner, str):
            raise BadMessage(BAD_FIELD, "The SNS notification's Message is not a string.")
        data = _load_json(inner, what="The SNS notification's Message")
        if isinstance(data, dict) and data.get("Type") == "Notification":
            raise BadMessage(NOT_AN_EVENT, "An SNS notification inside an SNS notification.")
    if not isinstance(data, dict):
        raise BadMessage(
            NOT_AN_EVENT,
            f"The message is JSON but a {_json_type(data)}, not an object: neither a "
            "CloudTrail event nor an EventBridge envelope.",
        )
    if "detail-type" in data or ("detail" in data and "source" in data):
        return _from_envelope(data)
    if not _CLOUDTRAIL_KEYS.intersection(data):
        keys = ", ".join(sorted(map(str, data))[:8]) or "none"
        raise BadMessage(
            NOT_AN_EVENT,
            "The message is a JSON object but neither a CloudTrail event (no eventSource, "
            f"eventName, userIdentity, …) nor an EventBridge envelope (no detail-type); keys: {keys}.",
        )
    return _from_record(data)


def _load_json(text: str, what: str = "The message") -> Any:
    if not text.strip():
        raise BadMessage(NOT_JSON, f"{what} is empty.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadMessage(
            NOT_JSON, f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from exc
    except RecursionError as exc:
        raise BadMessage(NOT_JSON, f"{what} is JSON nested too deeply to read.") from exc


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return type(value).__name__


def _from_envelope(envelope: dict[str, Any]) -> ParsedEvent:
    detail_type = envelope.get("detail-type")
    if not isinstance(detail_type, str) or not detail_type:
        raise BadMessage(MISSING_FIELD, "The EventBridge envelope has no detail-type.")
    detail = envelope.get("detail")
    if detail is None:
        raise BadMessage(MISSING_FIELD, f"The EventBridge envelope ({detail_type}) has no detail.")
    if not isinstance(detail, dict):
        raise BadMessage(
            BAD_FIELD,
            f"The EventBridge envelope's detail is a {_json_type(detail)}, not an object.",
        )
    if detail_type.endswith(_CLOUDTRAIL_SUFFIX):
        return _from_record(detail, envelope=envelope)
    # Another EventBridge event (e.g. an EC2 state change): its detail-type is its name,
    # and "aws.ec2" becomes the CloudTrail-style source "ec2.amazonaws.com".
    source = envelope.get("source")
    if not isinstance(source, str) or not source:
        raise BadMessage(MISSING_FIELD, f"The EventBridge envelope ({detail_type}) has no source.")
    account_id, account_seen = _pick_account(envelope.get("account"))
    region, region_seen = _pick_region(envelope.get("region"))
    return ParsedEvent(
        source=f"{source.removeprefix('aws.')}.amazonaws.com",
        name=detail_type,
        event_type=detail_type,
        event_id=_text(envelope.get("id")),
        time=parse_time(envelope.get("time")),
        account_id=account_id,
        region=region,
        request=detail,
        enveloped=True,
        account_id_seen=account_seen,
        region_seen=region_seen,
        detail=detail,
    )


def _from_record(record: dict[str, Any], envelope: dict[str, Any] | None = None) -> ParsedEvent:
    envelope = envelope or {}
    source = _required_text(record, "eventSource")
    name = _required_text(record, "eventName")
    identity = record.get("userIdentity")
    identity_account = identity.get("accountId") if isinstance(identity, dict) else None
    # The account the event happened in: recipientAccountId (CloudTrail's own), then the
    # envelope's account (the same, as EventBridge saw it), then the caller's account.
    account_id, account_seen = _pick_account(
        record.get("recipientAccountId"), envelope.get("account"), identity_account
    )
    region, region_seen = _pick_region(record.get("awsRegion"), envelope.get("region"))
    return ParsedEvent(
        source=source,
        name=name,
        event_type=_text(record.get("eventType")) or "AwsApiCall",
        event_id=_text(record.get("eventID")) or _text(envelope.get("id")),
        time=parse_time(record.get("eventTime")) or parse_time(envelope.get("time")),
        account_id=account_id,
        region=region,
        request=_as_object(record.get("requestParameters"), "requestParameters"),
        response=_as_object(record.get("responseElements"), "responseElements"),
        service_details=_as_object(record.get("serviceEventDetails"), "serviceEventDetails"),
        error_code=_text(record.get("errorCode")),
        error_message=_text(record.get("errorMessage")),
        read_only=_as_bool(record.get("readOnly")),
        enveloped=bool(envelope),
        account_id_seen=account_seen,
        region_seen=region_seen,
        detail=record,
    )


def _required_text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None or value == "":
        raise BadMessage(MISSING_FIELD, f"The CloudTrail event has no {key}.")
    if not isinstance(value, str):
        raise BadMessage(
            BAD_FIELD, f"The CloudTrail event's {key} is a {_json_type(value)}, not a string."
        )
    return value.strip()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value)


def _as_object(value: Any, key: str) -> dict[str, Any]:
    """requestParameters and friends: an object, or {} for null, "None" and the like."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        if value.strip() in _NULL_STRINGS:
            return {}
        # Some pipelines store the object as a JSON string.
        try:
            decoded = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            decoded = None
        if isinstance(decoded, dict):
            return decoded
    raise BadMessage(
        BAD_FIELD, f"The CloudTrail event's {key} is a {_json_type(value)}, not an object."
    )


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return None


def normalise_account_id(value: Any) -> str:
    """A 12-digit account ID, or "" when ``value`` cannot be one.

    IDs that went through a number lose their leading zeros (014824332634 → 14824332634),
    so shorter digit strings are padded back; placeholders and 13-digit values are unusable.
    """
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return ""
    value = value.strip()
    return value.zfill(12) if _DIGITS.match(value) else ""


def _pick_account(*candidates: Any) -> tuple[str, str]:
    seen: list[str] = []
    for candidate in candidates:
        account_id = normalise_account_id(candidate)
        if account_id:
            return account_id, ""
        if candidate not in (None, "") and str(candidate) not in seen:
            seen.append(str(candidate))
    return "", ", ".join(seen)


def _pick_region(*candidates: Any) -> tuple[str, str]:
    seen: list[str] = []
    for candidate in candidates:
        if isinstance(candidate, str) and validators.REGION.match(candidate.strip()):
            return candidate.strip(), ""
        if candidate not in (None, "") and str(candidate) not in seen:
            seen.append(str(candidate))
    return "", ", ".join(seen)


def parse_time(value: Any) -> datetime | None:
    """A time from an event, as an aware UTC datetime, or None when it cannot be read.

    Accepts ISO 8601 with or without a zone ("2023-04-13T19:56:38Z", "2021-10-29 23:50:09";
    no zone means UTC, CloudTrail's zone), epoch seconds or milliseconds (numbers or numeric
    strings) and the Java-style "Apr 25, 2023 12:48:16 AM" of some responseElements.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = dateutil_parser.parse(text)
            except (ValueError, OverflowError):
                return None
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (ValueError, OverflowError, OSError):
            return None
    return None


def decode_policy_document(value: Any) -> dict[str, Any] | None:
    """A policy document from an event: an object, a JSON string (requestParameters) or a
    URL-encoded JSON string (responseElements). Statement is returned as a list even when
    the document has a single statement object. None when it cannot be read."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("%"):
            # unquote, not unquote_plus: "+" is a legal character in policies (role names).
            text = unquote(text)
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return None
    if not isinstance(value, dict):
        return None
    document = dict(value)
    statement = document.get("Statement")
    if isinstance(statement, dict):
        document["Statement"] = [statement]
    elif statement is None:
        document["Statement"] = []
    return document


def excerpt(body: str, limit: int = 200) -> str:
    """The start of a message body for an issue message: one line, control characters
    shown as "?", cut at ``limit`` characters."""
    text = _CONTROL.sub("?", body.replace("\r", " ").replace("\n", " ").replace("\t", " "))
    text = re.sub(r" {2,}", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
