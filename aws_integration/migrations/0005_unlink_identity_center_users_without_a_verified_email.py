"""Versions before the link by UserId linked an Identity Center user to any portal user
with its email, verified or not, and sync now keeps a link once made: a link that an
unverified address made (someone taking another person's address) would stay for good.
Every link whose portal user has no verified address equal to the Identity Center user's
email is undone here, one audit event each; the next sync links again those that a
verified address matches (identity_center.user_linked).

The events are written in this migration, so that no upgrade can skip them: through the
historical model (the table as it is at this point), chained as audit.services does, each
hash computed by audit.models.AuditEvent's own compute_hash, the code audit_verify checks
it with.
"""

from django.db import migrations
from django.utils import timezone

# pg_advisory_xact_lock key of audit.services: the chain's writers are serialised by it.
CHAIN_LOCK_KEY = 0x6175646974


def unlink_unverified(apps, schema_editor):
    from audit.models import GENESIS_HASH, chain_keys
    from audit.models import AuditEvent as CurrentAuditEvent

    IdentityCenterUser = apps.get_model("aws_integration", "IdentityCenterUser")
    EmailAddress = apps.get_model("account", "EmailAddress")
    AuditEvent = apps.get_model("audit", "AuditEvent")
    db = schema_editor.connection.alias
    verified = {
        (user_id, email.strip().lower())
        for user_id, email in EmailAddress.objects.using(db)
        .filter(verified=True)
        .values_list("user_id", "email")
    }
    stale = [
        row
        for row in IdentityCenterUser.objects.using(db)
        .exclude(portal_user=None)
        .select_related("app", "portal_user")
        .order_by("pk")
        if (row.portal_user_id, row.email.strip().lower()) not in verified or not row.email.strip()
    ]
    if not stale:
        return
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
    prev = (
        AuditEvent.objects.using(db).order_by("-id").values_list("hash", flat=True).first()
        or GENESIS_HASH
    )
    key_id = next(iter(chain_keys()), None)
    now = timezone.now()
    for row in stale:
        IdentityCenterUser.objects.using(db).filter(pk=row.pk).update(portal_user=None)
        fields = {
            "occurred_at": now,
            "actor_type": "system",
            "actor_id": None,
            "actor_name": "system",
            "action": "identity_center.user_unlinked",
            "target_type": "access.user",
            "target_id": str(row.portal_user_id),
            "target_label": row.portal_user.email[:500],
            "details": {
                "app": row.app.name,
                "identity_center_user_id": row.remote_id,
                "user_name": row.user_name,
                "email": row.email,
                "portal_user": row.portal_user.email,
                "reason": "linked by an address not verified as the portal user's "
                "(before links were made by verified email only)",
            },
            "request_id": "",
            "ip_address": None,
            "key_id": key_id,
            "prev_hash": prev,
        }
        digest = CurrentAuditEvent(**fields).compute_hash()
        AuditEvent.objects.using(db).create(**fields, hash=digest)
        prev = digest


class Migration(migrations.Migration):
    dependencies = [
        ("aws_integration", "0004_user_subjects_keep_their_issuer"),
        ("audit", "0004_event_chain_key_id"),
        ("account", "0009_emailaddress_unique_primary_email"),
    ]

    operations = [migrations.RunPython(unlink_unverified, migrations.RunPython.noop)]
