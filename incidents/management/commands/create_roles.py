from django.core.management.base import BaseCommand

from incidents.roles import APPROVER_CAPACITIES, ROLE_PERMISSIONS, ensure_roles


class Command(BaseCommand):
    help = "Create or refresh the role groups and approver capacities, with their permissions."

    def handle(self, *args: object, **options: object) -> None:
        ensure_roles()
        self.stdout.write("Roles: " + ", ".join(ROLE_PERMISSIONS))
        self.stdout.write("Approver capacities: " + ", ".join(APPROVER_CAPACITIES))
