from django.apps import AppConfig


class RollbacksConfig(AppConfig):
    name = "rollbacks"
    verbose_name = "Rollbacks"
