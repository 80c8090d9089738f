from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class PortcullisAdminConfig(AdminConfig):
    default_site = "config.admin.PortcullisAdminSite"


class PortcullisConfig(AppConfig):
    """The project's own app: the task cluster's command (``qcluster``, which also runs the
    long-running loops) and the pieces every app shares (queueing, loops)."""

    name = "config"
    label = "portcullis"
