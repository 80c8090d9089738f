"""Creates the Admin and Auditor roles as Django groups with their permissions."""

from django.db import migrations

ADMIN_APPS = ("access", "audit", "aws_integration", "reviews", "django_q")


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    admin, _ = Group.objects.get_or_create(name="Admin")
    admin.permissions.set(
        Permission.objects.filter(content_type__app_label__in=ADMIN_APPS + ("auth",))
    )
    auditor, _ = Group.objects.get_or_create(name="Auditor")
    auditor.permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=ADMIN_APPS, codename__startswith="view_"
        )
    )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Admin", "Auditor"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0001_initial"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
