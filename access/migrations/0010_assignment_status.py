"""One status for an assignment's lifecycle instead of ``state`` plus ``reapply_requested``
(and a retry told apart by ``attempts`` and ``next_attempt_at``)."""

from django.db import migrations, models
from django.db.models import Q

# What the engine derived from the old columns, most specific first. The renamed column
# holds the old state's values until mapped.
FORWARD = [
    # In AWS with a re-apply asked for, or a failed apply over what AWS holds being retried.
    (
        Q(status="present")
        & (Q(reapply_requested=True) | Q(attempts__gt=0, next_attempt_at__isnull=False)),
        "reapply",
    ),
    (Q(status="present"), "applied"),
    (Q(status="waiting"), "waiting_for_user"),
    (Q(status="failed"), "failing"),
]
BACKWARD = {
    "reapply": {"status": "present", "reapply_requested": True},
    "applied": {"status": "present"},
    "waiting_for_user": {"status": "waiting"},
    "failing": {"status": "failed"},
}


def to_status(apps, schema_editor):
    Assignment = apps.get_model("access", "Assignment")
    for where, status in FORWARD:
        Assignment.objects.filter(where).update(status=status)


def to_state(apps, schema_editor):
    Assignment = apps.get_model("access", "Assignment")
    for status, fields in BACKWARD.items():
        Assignment.objects.filter(status=status).update(**fields)


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0009_leases_in_one_table"),
        # The upgrades that asked for re-applies wrote the columns mapped here.
        ("aws_integration", "0003_reapply_trust_policies_binding_session_names"),
    ]

    operations = [
        migrations.RenameField(model_name="assignment", old_name="state", new_name="status"),
        migrations.AlterField(
            model_name="assignment",
            name="status",
            field=models.CharField(
                choices=[
                    ("absent", "Not in AWS"),
                    ("applied", "In AWS"),
                    ("reapply", "In AWS, to apply again"),
                    ("waiting_for_user", "Waiting for the user's first sign-in"),
                    ("failing", "Failing"),
                ],
                default="absent",
                max_length=20,
            ),
        ),
        migrations.RunPython(to_status, to_state),
    ]
