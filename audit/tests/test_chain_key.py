"""AUDIT_CHAIN_KEY: events chained with HMAC-SHA256 under a key kept outside the database."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from audit.models import GENESIS_HASH, AuditEvent, key_id
from audit.services import record_event, verify_chain
from audit.tests.test_audit_verify import _rehash_from

KEY = "k" * 40
OTHER_KEY = "o" * 40


def _verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out, stderr=StringIO())
    return out.getvalue()


def _refusal() -> str:
    with pytest.raises(CommandError) as refused:
        _verify()
    return str(refused.value)


@pytest.fixture
def mixed_chain(db, settings) -> list[AuditEvent]:
    """Two events from before the key, then three keyed ones."""
    settings.AUDIT_CHAIN_KEY = []
    events = [record_event("test.plain", details={"n": n}) for n in range(2)]
    settings.AUDIT_CHAIN_KEY = [KEY]
    events += [record_event("test.keyed", details={"n": n}) for n in range(3)]
    return events


def test_a_keyed_event_is_an_hmac_naming_its_key(db, settings):
    settings.AUDIT_CHAIN_KEY = [KEY]

    event = AuditEvent.objects.get(pk=record_event("test.keyed").pk)

    assert event.key_id == key_id(KEY.encode()) != ""
    body = json.dumps(
        event.canonical_payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert "key_id" in event.canonical_payload()
    assert (
        event.hash
        == hmac.new(KEY.encode(), f"{GENESIS_HASH}\n{body}".encode(), hashlib.sha256).hexdigest()
    )
    assert KEY not in json.dumps(event.canonical_payload())


def test_plain_and_keyed_events_chain_together(mixed_chain):
    assert [e.key_id for e in mixed_chain] == [None, None] + [key_id(KEY.encode())] * 3
    assert mixed_chain[2].prev_hash == mixed_chain[1].hash
    assert f"audit chain intact: {len(mixed_chain)} events" in _verify()


def test_a_chain_rehashed_without_the_key_is_detected(mixed_chain):
    """The forger recomputes plain SHA-256 hashes from a keyed event on."""
    _rehash_from(mixed_chain, 3, actor_name="someone else", key_id=None)

    message = _refusal()

    assert f"audit chain broken at event {mixed_chain[3].pk} " in message
    assert f"it is not keyed, but event {mixed_chain[2].pk} before it is" in message


def test_a_chain_rehashed_without_the_key_from_its_first_keyed_event_is_detected(mixed_chain):
    _rehash_from(mixed_chain, 2, actor_name="someone else", key_id=None)

    message = _refusal()

    assert f"audit chain broken at event {mixed_chain[-1].pk} " in message
    assert "AUDIT_CHAIN_KEY is set but the newest event is not keyed" in message


def test_a_chain_rehashed_with_a_guessed_key_is_detected(mixed_chain, settings):
    settings.AUDIT_CHAIN_KEY = [KEY, OTHER_KEY]
    # Forged with another key under the real key's id.
    forged_keys = {key_id(KEY.encode()): OTHER_KEY.encode()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("audit.models.chain_keys", lambda: forged_keys)
        _rehash_from(mixed_chain, 3, actor_name="someone else")

    message = _refusal()

    assert f"audit chain broken at event {mixed_chain[3].pk} " in message
    assert "its contents do not match its hash" in message


def test_the_same_rehash_goes_unnoticed_without_a_key(db, settings):
    """Why the key: without it, whoever writes to the database can rehash the whole chain."""
    settings.AUDIT_CHAIN_KEY = []
    events = [record_event("test.plain", details={"n": n}) for n in range(3)]
    _rehash_from(events, 1, actor_name="someone else")

    assert "audit chain intact: 3 events" in _verify()


def test_keyed_events_cannot_be_verified_without_their_key(mixed_chain, settings):
    settings.AUDIT_CHAIN_KEY = []

    message = _refusal()

    assert f"audit chain broken at event {mixed_chain[2].pk} " in message
    assert "which AUDIT_CHAIN_KEY does not hold" in message


def test_a_new_key_signs_and_the_old_one_still_verifies(mixed_chain, settings):
    settings.AUDIT_CHAIN_KEY = [OTHER_KEY, KEY]

    newest = record_event("test.rotated")

    assert newest.key_id == key_id(OTHER_KEY.encode())
    assert list(verify_chain())[-1] == newest.pk
    assert f"audit chain intact: {len(mixed_chain) + 1} events" in _verify()


def test_a_key_set_before_any_keyed_event_asks_for_one(db, settings):
    settings.AUDIT_CHAIN_KEY = []
    record_event("test.plain")
    settings.AUDIT_CHAIN_KEY = [KEY]

    assert "no event has been written since the key was set" in _refusal()
    record_event("test.keyed")
    assert "audit chain intact: 2 events" in _verify()


def test_the_event_page_says_when_it_cannot_check_a_keyed_event(
    mixed_chain, settings, client, personas
):
    client.force_login(personas.auditor)
    settings.AUDIT_CHAIN_KEY = []

    response = client.get(f"/audit/{mixed_chain[2].pk}/")

    assert response.status_code == 200
    assert "which this server does not hold" in response.content.decode()


def test_a_short_key_is_refused_at_start():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DEBUG="true", AUDIT_CHAIN_KEY="too-short", DATABASE_URL="sqlite:///:memory:")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "AUDIT_CHAIN_KEY: each key must be at least 32 characters" in result.stderr


def test_removing_every_keyed_event_is_found_by_a_kept_head_not_by_the_key(mixed_chain):
    """Whoever may delete rows (the tables' owner) can cut the chain back to before the key;
    the next keyed event then covers the cut, and only a head kept elsewhere finds it."""
    from audit.tests.test_audit_verify import _behind_the_triggers_back

    head = f"{mixed_chain[-1].hash}:{len(mixed_chain)}"
    _behind_the_triggers_back("DELETE FROM audit_auditevent WHERE key_id IS NOT NULL", [])
    assert "newest event is not keyed" in _refusal()
    assert "--expect-head" in _refusal()

    record_event("test.after_the_cut")

    assert "audit chain intact: 3 events" in _verify()
    with pytest.raises(CommandError, match="shorter than the expected head"):
        call_command("audit_verify", "--expect-head", head, stdout=StringIO(), stderr=StringIO())
