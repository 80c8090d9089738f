from django.apps import AppConfig


class AwsIntegrationConfig(AppConfig):
    name = "aws_integration"
    verbose_name = "AWS integration"
