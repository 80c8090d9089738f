"""A fault-injecting HTTP proxy in front of the stand-in AWS (the moto server).

moto allows every call; AWS refuses what a policy does not allow and throttles or fails
now and then. The proxy sits between boto3 and moto and, by rules a test sets, answers
some calls itself the way AWS would, in the error shape of the service's protocol, so
the code under test sees exactly what botocore makes of a real refusal:

- ``deny(service, action, account_id=)``: 403 AccessDenied (query: sts, iam, rds),
  UnauthorizedOperation (ec2), AccessDeniedException (json: organizations, sso-admin,
  identitystore; rest-json: eks), AccessDenied for sqs (json with the query-compatible
  header, as SQS answers).
- ``deny_assume_role(role_arn=, account_id=)``: sts:AssumeRole refused for a role.
- ``fail(status=500 | "throttle", share=0.3, seed=)``: a share of the matching calls
  fail with a 5xx or a throttling error, which botocore retries.

A call is recognised from the request alone: the service from the SigV4 credential
scope (its signing name), the action from ``X-Amz-Target``, the ``Action`` parameter or,
for REST services (eks), the HTTP method and path matched against botocore's model. The
account of a call is the account of its credentials: the proxy learns which access key
belongs to which account from the AssumeRole calls it forwards (the role ARN in the
request, the AccessKeyId in the response); other keys are moto's default account. For
sts:AssumeRole itself, the account matched is the target role's account.

The ``aws_faults`` fixture (a clean stand-in, the proxy as ``AWS_ENDPOINT_URL``, no
rules) is registered through tests/fixtures.py.
"""

from __future__ import annotations

import json
import random
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import botocore.session
import pytest
import urllib3

MOTO_DEFAULT_ACCOUNT = "123456789012"
# The services Portcullis calls; their botocore names map to the signing names seen in
# the credential scope (sso-admin signs as "sso").
KNOWN_SERVICES = (
    "sts",
    "iam",
    "ec2",
    "rds",
    "organizations",
    "sso-admin",
    "identitystore",
    "eks",
    "sqs",
    "ssm",
)
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/aws4_request")


# What a call is --------------------------------------------------------------------
@dataclass(frozen=True)
class Service:
    """A service as the proxy sees it: its signing name, botocore name and protocol."""

    signing_name: str
    botocore_name: str
    protocol: str  # query, ec2, json, rest-json


@cache
def _services() -> dict[str, Service]:
    session = botocore.session.get_session()
    services: dict[str, Service] = {}
    for name in KNOWN_SERVICES:
        model = session.get_service_model(name)
        services[model.signing_name] = Service(model.signing_name, name, model.metadata["protocol"])
    return services


def signing_name(service: str) -> str:
    """The signing name for a botocore service name ("sso-admin" -> "sso"), or itself."""
    for signing, known in _services().items():
        if service in (signing, known.botocore_name):
            return signing
    return service


@cache
def _rest_routes(botocore_name: str) -> list[tuple[str, re.Pattern[str], str]]:
    """(method, path pattern, operation) for a REST service, most specific path first."""
    model = botocore.session.get_session().get_service_model(botocore_name)
    routes = []
    for operation in model.operation_names:
        http = model.operation_model(operation).http
        path = http["requestUri"].split("?")[0]
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
        routes.append((http["method"], re.compile(f"^{pattern}/?$"), operation))
    # Literal segments beat placeholders: /clusters/x/node-groups before /clusters/{name}.
    routes.sort(key=lambda r: (-r[1].pattern.count("/"), r[1].pattern.count("[^/]+")))
    return routes


@dataclass
class Call:
    """One request through the proxy, and the fault it got, if any."""

    service: str  # signing name
    action: str
    region: str
    access_key: str
    account_id: str  # the credentials' account; the target role's for sts:AssumeRole
    params: dict[str, str]
    fault: str = ""  # the error code the proxy answered with, if it did

    @property
    def iam_action(self) -> str:
        return f"{self.service}:{self.action}"


def _parse_call(
    method: str, path: str, headers: Any, body: bytes, key_accounts: dict[str, str]
) -> Call:
    authorization = headers.get("Authorization", "")
    match = _CREDENTIAL.search(authorization)
    query = parse_qs(urlsplit(path).query)
    if match is None and "X-Amz-Credential" in query:  # presigned URL
        match = _CREDENTIAL.search("Credential=" + query["X-Amz-Credential"][0])
    access_key, region, service = match.groups() if match else ("", "", "")
    params: dict[str, str] = {k: v[0] for k, v in query.items()}
    content_type = headers.get("Content-Type", "")
    if content_type.startswith("application/x-www-form-urlencoded") and body:
        params.update({k: v[0] for k, v in parse_qs(body.decode()).items()})
    action = ""
    if target := headers.get("X-Amz-Target"):
        action = target.rsplit(".", 1)[-1]
    elif "Action" in params:
        action = params["Action"]
    elif (known := _services().get(service)) and known.protocol.startswith("rest"):
        request_path = urlsplit(path).path
        for route_method, pattern, operation in _rest_routes(known.botocore_name):
            if route_method == method and pattern.match(request_path):
                action = operation
                break
    account = key_accounts.get(access_key, MOTO_DEFAULT_ACCOUNT)
    if service == "sts" and action.startswith("AssumeRole") and "RoleArn" in params:
        account = _arn_account(params["RoleArn"]) or account
    return Call(service, action, region, access_key, account, params)


def _arn_account(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


# Rules -----------------------------------------------------------------------------
@dataclass
class Rule:
    """Which calls to answer with a fault, and how; ``hits`` counts the faults given."""

    kind: Literal["deny", "fail"]
    service: str | None = None  # signing name
    action: str | None = None
    account_id: str | None = None
    role_arn: str | None = None
    status: int | Literal["throttle"] = 500
    share: float = 1.0
    times: int | None = None
    message: str | None = None
    rng: random.Random = field(default_factory=random.Random)
    hits: int = 0

    def matches(self, call: Call) -> bool:
        if self.service and self.service != call.service:
            return False
        if self.action and self.action != call.action:
            return False
        if self.account_id and self.account_id != call.account_id:
            return False
        if self.role_arn and self.role_arn != call.params.get("RoleArn"):
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        return self.share >= 1.0 or self.rng.random() < self.share


class AwsFaults:
    """The rules of a running proxy. Thread-safe: the proxy serves calls on many threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls: list[Call] = []
        self._rules: list[Rule] = []
        self._key_accounts: dict[str, str] = {}
        self._principals: dict[str, str] = {}
        self._lock = threading.Lock()

    def deny(
        self,
        service: str,
        action: str | None = None,
        *,
        account_id: str | None = None,
        role_arn: str | None = None,
        message: str | None = None,
    ) -> Rule:
        """Refuses ``service:action`` (every action when None) as AWS does when no policy
        allows it, for calls made with ``account_id``'s credentials (any when None)."""
        return self._add(
            Rule(
                kind="deny",
                service=signing_name(service),
                action=action,
                account_id=account_id,
                role_arn=role_arn,
                message=message,
            )
        )

    def deny_assume_role(
        self, role_arn: str | None = None, *, account_id: str | None = None
    ) -> Rule:
        """Refuses sts:AssumeRole into ``role_arn``, or into any role of ``account_id``."""
        if not role_arn and not account_id:
            raise ValueError("deny_assume_role needs a role ARN or an account ID.")
        return self.deny("sts", "AssumeRole", account_id=account_id, role_arn=role_arn)

    def fail(
        self,
        service: str | None = None,
        action: str | None = None,
        *,
        account_id: str | None = None,
        status: int | Literal["throttle"] = 500,
        share: float = 1.0,
        seed: int = 0,
        times: int | None = None,
    ) -> Rule:
        """Fails ``share`` of the matching calls (chosen by a generator seeded with
        ``seed``, so a test sees the same sequence every run) with a 5xx ``status`` or,
        with ``"throttle"``, the service's throttling error; at most ``times`` times."""
        if status != "throttle" and not 500 <= int(status) <= 599:
            raise ValueError("fail() injects 5xx statuses or 'throttle'; use deny() for 403.")
        return self._add(
            Rule(
                kind="fail",
                service=signing_name(service) if service else None,
                action=action,
                account_id=account_id,
                status=status,
                share=share,
                times=times,
                rng=random.Random(seed),
            )
        )

    def clear(self) -> None:
        """Removes every rule and forgets the calls seen (keeps the learnt accounts)."""
        with self._lock:
            self._rules.clear()
            self.calls.clear()

    def reset(self) -> None:
        with self._lock:
            self._rules.clear()
            self.calls.clear()
            self._key_accounts.clear()
            self._principals.clear()

    def account_of(self, access_key: str) -> str:
        return self._key_accounts.get(access_key, MOTO_DEFAULT_ACCOUNT)

    def faults(self) -> list[Call]:
        return [call for call in self.calls if call.fault]

    # Called by the request handler ---------------------------------------------------
    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _decide(self, call: Call) -> Rule | None:
        with self._lock:
            self.calls.append(call)
            for rule in self._rules:
                if rule.matches(call):
                    rule.hits += 1
                    return rule
        return None

    def _learn(self, call: Call, response_body: bytes) -> None:
        """Remembers the account (and session principal) of credentials handed out by
        AssumeRole, so later calls made with them are matched by account."""
        if call.service != "sts" or not call.action.startswith("AssumeRole"):
            return
        try:
            root = ElementTree.fromstring(response_body)
        except ElementTree.ParseError:
            return
        texts = {el.tag.rsplit("}", 1)[-1]: el.text for el in root.iter()}
        key, arn = texts.get("AccessKeyId"), texts.get("Arn")
        if key and call.account_id:
            with self._lock:
                self._key_accounts[key] = call.account_id
                if arn:
                    self._principals[key] = arn

    def _principal(self, call: Call) -> str:
        return (
            self._principals.get(call.access_key)
            or f"arn:aws:iam::{call.account_id}:user/{call.access_key or 'anonymous'}"
        )


# Answers in each protocol's shape ----------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _denial(faults: AwsFaults, rule: Rule, call: Call) -> tuple[str, str, int]:
    resource = f" on resource: {call.params['RoleArn']}" if call.params.get("RoleArn") else ""
    message = rule.message or (
        f"User: {faults._principal(call)} is not authorized to perform: {call.iam_action}"
        f"{resource} because no identity-based policy allows the {call.iam_action} action"
    )
    protocol = _protocol(call)
    if call.service == "ec2":
        return "UnauthorizedOperation", message, 403
    if call.service == "sqs":
        return "AccessDenied", message, 403
    if protocol == "query":
        return "AccessDenied", message, 403
    return "AccessDeniedException", message, 403 if protocol == "rest-json" else 400


def _failure(rule: Rule, call: Call) -> tuple[str, str, int]:
    protocol = _protocol(call)
    if rule.status == "throttle":
        if call.service == "ec2":
            return "RequestLimitExceeded", "Request limit exceeded.", 503
        if protocol == "query":
            return "Throttling", "Rate exceeded", 400
        return "ThrottlingException", "Rate exceeded", 429 if protocol == "rest-json" else 400
    status = int(rule.status)
    if call.service == "ec2":
        return "InternalError", "An internal error has occurred", status
    if protocol == "query":
        return "InternalFailure", "The request processing has failed.", status
    return "InternalServerException", "An internal error occurred.", status


def _protocol(call: Call) -> str:
    known = _services().get(call.service)
    return known.protocol if known else "json"


def error_answer(call: Call, code: str, message: str, status: int) -> Answer:
    request_id = str(uuid.uuid4())
    protocol = _protocol(call)
    if protocol == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{_xml(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
        return Answer(status, {"Content-Type": "text/xml;charset=UTF-8"}, body.encode())
    if protocol == "query":
        kind = "Receiver" if status >= 500 else "Sender"
        body = (
            f'<ErrorResponse xmlns="https://{call.service}.amazonaws.com/doc/">'
            f"<Error><Type>{kind}</Type><Code>{code}</Code><Message>{_xml(message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return Answer(
            status,
            {"Content-Type": "text/xml", "x-amzn-RequestId": request_id},
            body.encode(),
        )
    headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": code}
    if protocol == "rest-json":
        headers["Content-Type"] = "application/json"
        return Answer(status, headers, json.dumps({"message": message}).encode())
    headers["Content-Type"] = "application/x-amz-json-1.1"
    if call.service == "sqs":
        # SQS speaks JSON but keeps its query-era codes, carried in this header.
        kind = "Receiver" if status >= 500 else "Sender"
        headers["x-amzn-query-error"] = f"{code};{kind}"
        headers["Content-Type"] = "application/x-amz-json-1.0"
        coral = {"AccessDenied": "AccessDeniedException"}.get(code, code)
        payload = {"__type": f"com.amazon.coral.service#{coral}", "message": message}
    else:
        payload = {"__type": code, "message": message}
    return Answer(status, headers, json.dumps(payload).encode())


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# The proxy ---------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pooled connections expect
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows failures, not every forwarded call

    def _handle(self) -> None:
        body = self._read_body()
        proxy = self.server
        call = _parse_call(self.command, self.path, self.headers, body, proxy.faults._key_accounts)
        rule = proxy.faults._decide(call)
        if rule is not None:
            code, message, status = (
                _denial(proxy.faults, rule, call) if rule.kind == "deny" else _failure(rule, call)
            )
            call.fault = code
            answer = error_answer(call, code, message, status)
        else:
            answer = self._forward(body)
            if answer.status == HTTPStatus.OK:
                proxy.faults._learn(call, answer.body)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> Answer:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        response = self.server.pool.request(
            self.command,
            self.server.upstream + self.path,
            body=body or None,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=True,
            decode_content=False,
        )
        return Answer(
            response.status,
            {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP},
            response.data,
        )


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str, faults_url_host: str = "127.0.0.1") -> None:
        super().__init__((faults_url_host, 0), _Handler)
        self.upstream = upstream.rstrip("/")
        self.pool = urllib3.PoolManager(maxsize=64, timeout=urllib3.Timeout(60))
        host, port = self.server_address[:2]
        self.faults = AwsFaults(f"http://{host}:{port}")  # type: ignore[str-bytes-safe]  # an IP


class FaultProxy:
    """A running proxy to ``upstream`` on a free port of 127.0.0.1."""

    def __init__(self, upstream: str) -> None:
        self._server = _ProxyServer(upstream)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-faults", daemon=True
        )
        self._thread.start()

    @property
    def faults(self) -> AwsFaults:
        return self._server.faults

    @property
    def url(self) -> str:
        return self._server.faults.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.pool.clear()


# Fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def aws_faults_proxy(moto_server: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_server)
    yield proxy
    proxy.stop()


def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore still retries with jittered exponential backoff, and adaptive mode still
    slows the client down after throttling, on a scale of milliseconds rather than AWS's
    seconds, so that a test of retries takes no longer than one without."""
    from botocore.retries.bucket import TokenBucket
    from botocore.retries.standard import ExponentialBackoff

    # The adaptive limiter's floor is 0.5 calls a second (a 2 s wait after a throttle).
    monkeypatch.setattr(TokenBucket.__init__, "__defaults__", (50.0,))
    monkeypatch.setattr(
        ExponentialBackoff,
        "_DEFAULT_BACKOFF_CONFIG",
        {"throttling_base_scale": 0.01, "non_throttling_base_scale": 0.005},
    )


@pytest.fixture
def aws_faults(
    aws: str, aws_faults_proxy: FaultProxy, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AwsFaults]:
    """The stand-in AWS, emptied, reached through the fault proxy: boto3 clients made by
    aws_integration.clients go through it; rules set on the returned object apply."""
    _fast_retries(monkeypatch)
    faults = aws_faults_proxy.faults
    faults.reset()
    settings.AWS_ENDPOINT_URL = faults.url
    yield faults
    faults.reset()


@pytest.fixture
def aws_faults_kept(
    moto_server: str, aws_faults_proxy: FaultProxy, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AwsFaults]:
    """Like ``aws_faults`` but leaves the stand-in as it is, for a module that seeds once
    and re-seeds only when another test emptied it (moto's state is per process)."""
    _fast_retries(monkeypatch)
    faults = aws_faults_proxy.faults
    faults.clear()
    settings.AWS_ENDPOINT_URL = faults.url
    settings.AWS_MAX_ATTEMPTS = 2
    yield faults
    faults.clear()
