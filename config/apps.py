from django.apps import AppConfig, apps
from django.contrib.admin.apps import AdminConfig
from django.db.models.signals import post_migrate


class PortcullisAdminConfig(AdminConfig):
    default_site = "config.admin.PortcullisAdminSite"


class PortcullisConfig(AppConfig):
    """The project's own app: the task cluster's command (``qcluster``, which also runs the
    long-running loops), the schedule installer (``install_schedules``) and the pieces every
    app shares (queueing, loops, schedules)."""

    name = "config"
    label = "portcullis"

    def ready(self) -> None:
        from config import lookups, schedules

        lookups.install()

        # Schedules are declared in code; every migrate brings the rows in line with them.
        # django-q2's post_migrate, because this app has no models and so gets none.
        post_migrate.connect(
            schedules.install_after_migrate,
            sender=apps.get_app_config("django_q"),
            dispatch_uid="config.install_schedules",
        )
