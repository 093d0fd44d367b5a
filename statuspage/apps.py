from django.apps import AppConfig


class StatuspageConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "statuspage"
    verbose_name = "Status page and communications"

    def ready(self) -> None:
        # Connects the receivers for rollback runs starting and finishing.
        from statuspage import hooks  # noqa: F401
