"""Managed roles used to be named without their resource's region or account, so two
same-named databases or clusters shared one role (and so its holders). Every assignment
applied under such a name is applied again: the driver creates the role named per resource,
then leaves the old one, deleting it once no assignment is still on it (grants.managed)."""

from django.db import migrations
from django.utils import timezone

MANAGED_TYPES = [
    "aws_ec2_instance",
    "aws_eks_cluster",
    "aws_rds_mysql",
    "aws_rds_postgres",
    "aws_aurora_mysql",
    "aws_aurora_postgres",
]


def reapply_managed(apps, schema_editor):
    Assignment = apps.get_model("access", "Assignment")
    # next_attempt_at now: the grant engine picks them up at its next tick, and the
    # reapply_requested flag stays until an apply succeeds.
    Assignment.objects.filter(resource__type__in=MANAGED_TYPES, state="present").update(
        reapply_requested=True, next_attempt_at=timezone.now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0006_assignment_reapply_requested"),
        ("aws_integration", "0001_initial"),
    ]

    operations = [migrations.RunPython(reapply_managed, migrations.RunPython.noop)]
