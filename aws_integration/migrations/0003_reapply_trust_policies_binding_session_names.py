"""Trust statements written by older versions let a holder name their session as they
liked, so a revoke could not deny a session they minted themselves. Every assignment whose
access lives in a trust policy is applied again, which rewrites the statement in the shape
that binds each holder's session name to their subject (trust_policy)."""

from django.db import migrations
from django.utils import timezone

TRUST_POLICY_TYPES = [
    "aws_iam_role",
    "aws_ec2_instance",
    "aws_eks_cluster",
    "aws_rds_mysql",
    "aws_rds_postgres",
    "aws_aurora_mysql",
    "aws_aurora_postgres",
]


def reapply_trust_policies(apps, schema_editor):
    Assignment = apps.get_model("access", "Assignment")
    # next_attempt_at now: the grant engine picks them up at its next tick, and the
    # reapply_requested flag stays until an apply succeeds.
    Assignment.objects.filter(resource__type__in=TRUST_POLICY_TYPES, state="present").update(
        reapply_requested=True, next_attempt_at=timezone.now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("aws_integration", "0002_reapply_managed_roles_named_per_resource"),
    ]

    operations = [migrations.RunPython(reapply_trust_policies, migrations.RunPython.noop)]
