from django.apps import AppConfig


class AwsIntegrationConfig(AppConfig):
    name = "aws_integration"
    verbose_name = "AWS integration"

    def ready(self) -> None:
        from aws_integration.grants import register_drivers

        register_drivers()
