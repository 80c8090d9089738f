"""The stand-ins for the demo and the tests: AWS (a moto server) and an OpenID Connect
identity provider (oidc-provider-mock), each an HTTP server on a thread of this process.

Both packages come with the ``demo`` extra and are imported only when a server starts.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

logger = logging.getLogger(__name__)


class StandInError(Exception):
    """A stand-in server could not be started."""


def _check_port_free(host: str, port: int, what: str, option: str) -> None:
    # ThreadedMotoServer binds on its own thread and waits for ever when the bind
    # fails, so a busy port is refused here, with the option that changes it.
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StandInError(
                f"Cannot start {what} on {host}:{port}: {exc.strerror}. "
                f"Stop what uses that port or choose another with {option}."
            ) from exc


@dataclass
class MotoServer:
    """A running moto server; ``url`` is what AWS_ENDPOINT_URL should be."""

    server: Any  # moto.server.ThreadedMotoServer
    url: str

    def reset(self) -> None:
        reset_moto(self.url)

    def stop(self) -> None:
        self.server.stop()
        # ThreadedMotoServer.stop() ends serving but leaves the socket open.
        inner = getattr(self.server, "_server", None)
        if inner is not None:
            inner.server_close()


def use_base_amis_only() -> bool:
    """Makes moto load only its base list of public images (44) for each account and region.

    By default moto also loads its per-region "latest" lists, ~1,300 images with a snapshot
    and a volume each, for every account and region an EC2 call touches: half a second
    per member account, the largest cost of seeding. ``MOTO_AMIS_PATH`` pointing at moto's
    own base list skips those. It is read when moto's EC2 models are first imported, so
    this does nothing once they are, or when MOTO_AMIS_PATH is already set; returns
    whether it took effect.
    """
    if "MOTO_AMIS_PATH" in os.environ or "moto.ec2.models.amis" in sys.modules:
        return False
    import moto

    source = Path(moto.__file__).parent / "ec2" / "resources" / "amis.json.gz"
    if not source.exists():  # another moto layout: keep its defaults
        return False
    target = Path(tempfile.gettempdir()) / f"portcullis-moto-{moto.__version__}-amis.json"
    if not target.exists():
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(gzip.decompress(source.read_bytes()))
        partial.replace(target)
    os.environ["MOTO_AMIS_PATH"] = str(target)
    return True


def add_permission_set_tagging() -> None:
    """Teaches moto's sso-admin the tag calls it lacks (ListTagsForResource, TagResource,
    UntagResource) for permission sets, on the tags CreatePermissionSet stored: Portcullis
    reads them to know which permission sets are requestable. Idempotent; call it before
    the server handles a request."""
    from moto.ssoadmin.exceptions import ResourceNotFoundException
    from moto.ssoadmin.responses import SSOAdminResponse

    if getattr(SSOAdminResponse, "_portcullis_tagging", False):
        return

    def permission_set(response: Any) -> Any:
        arn = response._get_param("ResourceArn")
        instance_arn = response._get_param("InstanceArn")
        for found in response.ssoadmin_backend.permission_sets:
            if found.permission_set_arn == arn and instance_arn in ("", None, found.instance_arn):
                return found
        raise ResourceNotFoundException(message=f"Could not find the resource {arn}")

    def list_tags_for_resource(self: Any) -> str:
        return json.dumps({"Tags": list(permission_set(self).tags or [])})

    def tag_resource(self: Any) -> str:
        found = permission_set(self)
        new = {t["Key"]: t["Value"] for t in self._get_param("Tags") or []}
        kept = [t for t in found.tags or [] if t["Key"] not in new]
        found.tags = kept + [{"Key": k, "Value": v} for k, v in new.items()]
        return "{}"

    def untag_resource(self: Any) -> str:
        found = permission_set(self)
        keys = set(self._get_param("TagKeys") or [])
        found.tags = [t for t in found.tags or [] if t["Key"] not in keys]
        return "{}"

    # moto's SSO admin has no tagging of permission sets: added to its class here.
    SSOAdminResponse.list_tags_for_resource = list_tags_for_resource  # type: ignore[attr-defined]
    SSOAdminResponse.tag_resource = tag_resource  # type: ignore[attr-defined]
    SSOAdminResponse.untag_resource = untag_resource  # type: ignore[attr-defined]
    SSOAdminResponse._portcullis_tagging = True  # type: ignore[attr-defined]


def start_moto(
    host: str = "127.0.0.1", port: int = 0, *, base_amis_only: bool = True
) -> MotoServer:
    """Starts a moto server on ``host:port`` (0: any free port) and returns it with its URL.

    moto keeps its state per process: every server started in one process shares it.
    """
    _check_port_free(host, port, "the stand-in AWS", "--aws-port")
    if base_amis_only:
        use_base_amis_only()
    add_permission_set_tagging()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    return MotoServer(server=server, url=f"http://{bound_host}:{bound_port}")


def reset_moto(url: str) -> None:
    """Empties the moto server at ``url`` (every account, region and service)."""
    requests.post(f"{url.rstrip('/')}/moto-api/reset", timeout=30).raise_for_status()


@dataclass(frozen=True)
class IdpUser:
    """A predefined user of the test identity provider (one click to sign in as them)."""

    sub: str
    email: str
    name: str


@dataclass
class IdpServer:
    """A running oidc-provider-mock; ``url`` is the issuer (SSO_OIDC_ISSUER)."""

    url: str
    _context: contextlib.AbstractContextManager[Any]

    def stop(self) -> None:
        try:
            self._context.__exit__(None, None, None)
        except TimeoutError:
            # The provider's server thread did not end within its own short timeout; it
            # is a daemon-less thread serving nothing more, and the process is ending.
            logger.warning("The test identity provider took long to stop.")


def start_idp(port: int = 0, users: Iterable[IdpUser] = ()) -> IdpServer:
    """Starts oidc-provider-mock on localhost:``port`` (0: any free port) with predefined users.

    The provider accepts any client id and secret; the issuer is ``http://localhost:<port>``.
    """
    from oidc_provider_mock import User, run_server_in_thread

    _check_port_free("127.0.0.1", port, "the test identity provider", "--idp-port")
    context = run_server_in_thread(
        port=port,
        user_claims=[
            User(
                sub=user.sub,
                claims={"email": user.email, "name": user.name, "email_verified": True},
            )
            for user in users
        ],
    )
    try:
        server = context.__enter__()
    except OSError as exc:
        raise StandInError(
            f"Cannot start the test identity provider on port {port}: {exc}. "
            "Choose another with --idp-port."
        ) from exc
    return IdpServer(url=f"http://localhost:{server.server_port}", _context=context)
