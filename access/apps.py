from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access"

    def ready(self) -> None:
        from access import auth_events  # noqa: F401  (connects login/logout audit receivers)
        from access.roles import sync_role_permissions

        # Connected for every app's post_migrate (no sender): the permissions of apps
        # migrated after this one exist only by their own signal.
        post_migrate.connect(sync_role_permissions, dispatch_uid="access.sync_role_permissions")
