"""Copies each request's ``stage_reviewers`` JSON list (ids of who may decide its current
stage) into the StageReviewer table, and back when unapplied."""

from django.db import migrations

BATCH = 1000


def copy_to_table(apps, schema_editor):
    AccessRequest = apps.get_model("access", "AccessRequest")
    StageReviewer = apps.get_model("access", "StageReviewer")
    User = apps.get_model("access", "User")
    rows = (
        AccessRequest.objects.exclude(stage_reviewers=[])
        .values_list("pk", "current_stage", "stage_reviewers")
        .order_by("pk")
        .iterator(chunk_size=BATCH)
    )
    known = set(User.objects.values_list("pk", flat=True))
    batch = []
    for pk, stage, ids in rows:
        # The list held plain ids, so a deleted user's id could stay behind: nobody to copy.
        for user_id in sorted({i for i in ids or [] if isinstance(i, int) and i in known}):
            batch.append(StageReviewer(request_id=pk, stage=stage, user_id=user_id))
        if len(batch) >= BATCH:
            StageReviewer.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    StageReviewer.objects.bulk_create(batch, ignore_conflicts=True)


def copy_to_json(apps, schema_editor):
    AccessRequest = apps.get_model("access", "AccessRequest")
    StageReviewer = apps.get_model("access", "StageReviewer")
    current = {}
    for request_id, stage, user_id, current_stage in StageReviewer.objects.values_list(
        "request_id", "stage", "user_id", "request__current_stage"
    ).order_by("request_id", "user_id"):
        if stage == current_stage:
            current.setdefault(request_id, []).append(user_id)
    for request_id, ids in current.items():
        AccessRequest.objects.filter(pk=request_id).update(stage_reviewers=ids)


class Migration(migrations.Migration):

    dependencies = [
        ('access', '0012_stage_reviewers'),
    ]

    operations = [migrations.RunPython(copy_to_table, copy_to_json)]
