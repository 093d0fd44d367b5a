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
        # A person marking a release known-good while its checks fail says why.
        from incidents.guards import register_known_good_guard
        from rollbacks.release_tracking import known_good_by_hand_refusal

        register_known_good_guard("rollbacks", known_good_by_hand_refusal)
        # The watch after a run succeeds (rollbacks.watch).
        from rollbacks.signals import run_finished, run_started
        from rollbacks.watch import watch_start, watches_end_for

        run_finished.connect(watch_start, dispatch_uid="rollbacks.watch_start")
        run_started.connect(watches_end_for, dispatch_uid="rollbacks.watches_end_for")
        # Alerts that may draft an automatic rollback (rollbacks.automation).
        from alerts.signals import alert_fired
        from rollbacks.automation import auto_rollback_enqueue

        alert_fired.connect(auto_rollback_enqueue, dispatch_uid="rollbacks.auto_rollback")
