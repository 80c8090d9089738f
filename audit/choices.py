from django.db import models


class ActorType(models.TextChoices):
    USER = "user", "User"
    SYSTEM = "system", "System"
    API = "api", "API token"
