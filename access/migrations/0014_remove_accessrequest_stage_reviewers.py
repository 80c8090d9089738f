import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('access', '0013_copy_stage_reviewers'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='accessrequest',
            name='stage_reviewers',
        ),
        migrations.AlterField(
            model_name='stagereviewer',
            name='request',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='stage_reviewers', to='access.accessrequest'),
        ),
    ]
