from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access"

    def ready(self) -> None:
        from access import auth_events  # noqa: F401  (connects login/logout audit receivers)
