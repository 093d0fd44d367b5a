from django.apps import AppConfig


class RollbacksConfig(AppConfig):
    name = "rollbacks"
    verbose_name = "Rollbacks"

    def ready(self) -> None:
        # The rollback cards, panel and log lines of the incident room (incidents.room).
        from rollbacks import guards, room

        room.register()
        # No lowering of the severity under a plan that waits for approval.
        guards.register()
