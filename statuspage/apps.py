from django.apps import AppConfig


class StatuspageConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "statuspage"
    verbose_name = "Status page and communications"

    def ready(self) -> None:
        # Registers the system check of the branding settings (checks); connects the
        # receivers for rollback runs starting and finishing (hooks), and those that email
        # the page's subscribers (subscriber_hooks).
        from statuspage import checks, hooks, subscriber_hooks  # noqa: F401
