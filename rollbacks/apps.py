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
        # The watch after a run succeeds (rollbacks.watch).
        from rollbacks.signals import run_finished
        from rollbacks.watch import watch_start

        run_finished.connect(watch_start, dispatch_uid="rollbacks.watch_start")
