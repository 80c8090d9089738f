"""Setting up the AWS connection: the External ID, the OIDC settings and their checks.

Every change is audited in the transaction that makes it. The OIDC client secret never
leaves this module in clear: audit details say only whether it is set and that it changed.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from django.db import transaction
from django.utils import timezone

from access.services import identity
from audit.services import record_event
from aws_integration import outbound
from aws_integration.aws_settings import get_aws_settings, mask_external_id, settings_state
from aws_integration.grants import iam, managed
from aws_integration.models import AwsSettings, generate_external_id

logger = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
REQUIRED_DISCOVERY_KEYS = ("jwks_uri", "authorization_endpoint", "token_endpoint")
SETTINGS_FIELDS = ("oidc_issuer_url", "oidc_client_id", "oidc_client_secret")


def subject_resource_types() -> set[str]:
    """The resource types whose grants name the user's OIDC subject in a trust statement."""
    return set(iam.DRIVERS) | set(managed.DRIVERS)


def regenerate_external_id(actor: Any) -> AwsSettings:
    """Replaces the External ID. Every ingester role's trust policy must then be updated,
    or Portcullis can no longer assume it."""
    get_aws_settings()
    with transaction.atomic():
        obj = AwsSettings.objects.select_for_update().get(pk=1)
        before = mask_external_id(obj.external_id)
        obj.external_id = generate_external_id()
        obj.external_id_rotated_at = timezone.now()
        obj.save(update_fields=["external_id", "external_id_rotated_at", "updated_at"])
        record_event(
            "aws.external_id.regenerated",
            actor=actor,
            target=obj,
            details={
                "before": {"external_id": before},
                "after": {"external_id": mask_external_id(obj.external_id)},
            },
        )
    return obj


def update_aws_settings(
    settings_obj: AwsSettings,
    changes: dict[str, Any],
    actor: Any,
    *,
    checked: bool = False,
) -> AwsSettings:
    """Applies ``changes`` (OIDC issuer URL, client ID, client secret) and records one
    event with the values before and after; nothing is recorded when nothing changed.

    ``checked`` says the issuer's discovery document was just checked and passed."""
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise ValueError(
            f"Not an AWS setting that can be changed here: {', '.join(sorted(unknown))}."
        )
    with transaction.atomic():
        obj = AwsSettings.objects.select_for_update().get(pk=settings_obj.pk)
        before = settings_state(obj)
        changed = [name for name, value in changes.items() if getattr(obj, name) != value]
        for name in changed:
            setattr(obj, name, changes[name])
        if checked:
            obj.oidc_checked_at = timezone.now()
        if changed or checked:
            obj.full_clean()
            obj.save()
        if changed:
            record_event(
                "aws.settings.updated",
                actor=actor,
                target=obj,
                details={
                    "before": before,
                    "after": settings_state(obj),
                    # A list of names, so that a changed secret shows without its value.
                    "changed": sorted(changed),
                },
            )
            if "oidc_issuer_url" in changed:
                identity.forget_subjects_of_other_issuers(
                    obj.oidc_issuer_url, actor=actor, resource_types=subject_resource_types()
                )
    settings_obj.refresh_from_db()
    return obj


def check_oidc_discovery(issuer_url: str) -> tuple[bool, str]:
    """Fetches the issuer's discovery document and checks what AWS and the Connect flow
    rely on. Returns (ok, message); the message says exactly what is wrong.

    Both fetches (the document, then its jwks_uri) go through ``outbound.fetch_json``:
    https, public addresses only, no redirects, a capped size."""
    issuer = (issuer_url or "").strip()
    parsed = urlparse(issuer)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False, f"“{issuer}” is not a URL: the issuer looks like https://login.example.com."
    if parsed.scheme != "https" and not outbound.allow_local():
        return False, f"AWS accepts only https issuers; “{issuer}” uses {parsed.scheme}."
    if parsed.query or parsed.fragment:
        return False, f"An issuer URL has no query or fragment: “{issuer}”."
    url = issuer.rstrip("/") + DISCOVERY_PATH
    try:
        document = outbound.fetch_json(url, "The discovery document")
    except outbound.FetchRefused as exc:
        return False, str(exc)
    if not isinstance(document, dict):
        return False, f"The discovery document at {url} is JSON but not an object."
    named = document.get("issuer")
    if not named:
        return False, f"The discovery document at {url} names no issuer."
    if str(named).rstrip("/") != issuer.rstrip("/"):
        return False, (
            f"The discovery document at {url} names the issuer “{named}”, not “{issuer}”: "
            f"enter exactly “{named}” as the issuer URL."
        )
    missing = [key for key in REQUIRED_DISCOVERY_KEYS if not document.get(key)]
    if missing:
        return False, f"The discovery document at {url} lacks {', '.join(missing)}."
    try:
        jwks = outbound.fetch_json(str(document["jwks_uri"]), "The signing keys (jwks_uri)")
    except outbound.FetchRefused as exc:
        return False, str(exc)
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        return False, f"The signing keys at {document['jwks_uri']} hold no keys."
    return True, f"The discovery document at {url} is valid (issuer {named})."
