from django.contrib.admin.apps import AdminConfig


class PortcullisAdminConfig(AdminConfig):
    default_site = "config.admin.PortcullisAdminSite"
