"""``reapply_requested`` is the ``reapply`` status now (mapped in 0010)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0010_assignment_status"),
    ]

    operations = [
        migrations.RemoveField(model_name="assignment", name="reapply_requested"),
    ]
