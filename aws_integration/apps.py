from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AwsIntegrationConfig(AppConfig):
    name = "aws_integration"
    verbose_name = "AWS integration"

    def ready(self) -> None:
        from aws_integration import schedules
        from aws_integration.grants import register_drivers

        register_drivers()

        # Schedules are declared in code; every migrate brings the rows in line with them.
        post_migrate.connect(
            schedules.install_after_migrate,
            sender=self,
            dispatch_uid="aws_integration.install_schedules",
        )
