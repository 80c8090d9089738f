from django.db import migrations


def install(apps, schema_editor):
    from audit import triggers

    triggers.install_truncate(schema_editor.connection)


def drop(apps, schema_editor):
    from audit import triggers

    triggers.drop_truncate(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]
    operations = [migrations.RunPython(install, drop)]
