from django.apps import AppConfig


class PlaybooksConfig(AppConfig):
    name = "playbooks"
    verbose_name = "Playbooks"

    def ready(self) -> None:
        # The "Use a playbook" card of the incident room (incidents.room).
        from playbooks import room
        from playbooks.services import playbook_draft_by_name
        from rollbacks.plan_sources import register_plan_source

        room.register()
        # `manage.py rollback --playbook NAME --param k=v` (rollbacks.plan_sources).
        register_plan_source("playbook", playbook_draft_by_name)
