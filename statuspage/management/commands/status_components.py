"""The public page's components and groups from a terminal, through the services the
console's components page calls (statuspage.components), with their checks and role.

manage.py status_components                      # the demo's layout (what bin/demo runs)
manage.py status_components list
manage.py status_components add-group "Online store" --description "What shoppers use" --as sam
manage.py status_components add Checkout --group "Online store" --service checkout \\
    --service payments-api --as sam
manage.py status_components edit Checkout --description "Basket and payments" --as sam
manage.py status_components order --group "Online store" Checkout Storefront --as sam
manage.py status_components remove Checkout --as sam

A component is named by its id or its name (its id when the name is in several groups).
`demo`, the default, adds the demo's customer-facing components (statuspage.demo) fed by
those of its services that exist, and leaves what exists alone: safe to run again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.errors import DomainError, PermissionDenied
from incidents.management.lookups import add_actor_argument, console_user, service_named, shown
from incidents.models import Environment
from statuspage import components, selectors
from statuspage.demo import DEMO_LAYOUT
from statuspage.management.lookups import component_named
from statuspage.models import Component


def group_ids(references: list[str]) -> list[str]:
    """The ids of the groups named (for components.one_group, which refuses two)."""
    ids = []
    for reference in references:
        group = component_named(reference)
        if not group.is_group:
            raise CommandError(f"--group: {shown(group.name)!r} is a component, not a group.")
        ids.append(str(group.pk))
    return ids


class Command(BaseCommand):
    help = "List, add, edit, order and remove the status page's components and groups."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action")
        actions.add_parser("demo", help="add the demo's components (the default)")
        actions.add_parser("list", help="the components and groups in page order")
        add = actions.add_parser("add", help="add a component")
        add.add_argument("name")
        add_group = actions.add_parser("add-group", help="add a group")
        add_group.add_argument("name")
        edit = actions.add_parser("edit", help="change what the options name, keep the rest")
        edit.add_argument("component")
        edit.add_argument("--name")
        order = actions.add_parser("order", help="put a level's components in this order")
        order.add_argument("components", nargs="+", metavar="component")
        remove = actions.add_parser("remove", help="take a component or group off the page")
        remove.add_argument("component")
        for sub in (add, add_group, edit):
            sub.add_argument("--description")
        for sub in (add, edit, order):
            sub.add_argument("--group", action="append", default=[], help="a group's name or id")
        for sub in (add, edit):
            sub.add_argument(
                "--service",
                action="append",
                default=[],
                help="a production service feeding it; repeat it for each",
            )
            sub.add_argument("--only-show-if-degraded", action="store_true", default=None)
        edit.add_argument("--no-group", action="store_true", help="move it to the top level")
        edit.add_argument("--no-services", action="store_true", help="fed by no service")
        edit.add_argument(
            "--always-show", dest="only_show_if_degraded", action="store_false", default=None
        )
        for sub in (add, add_group, edit, order, remove):
            add_actor_argument(sub)

    def handle(self, *args: Any, action: str | None, **options: Any) -> None:
        if action in (None, "demo"):
            created = components.components_lay_out(DEMO_LAYOUT)
            self.stdout.write(f"{len(created)} status-page component(s) and group(s) created")
            return
        if action == "list":
            self.write_list()
            return
        actor = console_user(options["username"])
        try:
            getattr(self, f"do_{action.replace('-', '_')}")(actor, **options)
        except PermissionDenied as error:
            raise CommandError(f"--as {actor.username}: {error}") from error
        except DomainError as error:
            raise CommandError(str(error)) from error

    def do_add(self, actor: Any, **options: Any) -> None:
        created = components.component_create(
            actor=actor,
            name=options["name"],
            description=options["description"] or "",
            group_id=components.one_group(group_ids(options["group"])),
            only_show_if_degraded=bool(options["only_show_if_degraded"]),
            service_ids=self.service_ids(options["service"]),
        )
        self.stdout.write(f"Added {shown(created.name)} (id {created.pk}).")

    def do_add_group(self, actor: Any, **options: Any) -> None:
        created = components.component_create(
            actor=actor,
            is_group=True,
            name=options["name"],
            description=options["description"] or "",
        )
        self.stdout.write(f"Added the group {shown(created.name)} (id {created.pk}).")

    def do_edit(self, actor: Any, **options: Any) -> None:
        component = component_named(options["component"])
        if options["no_group"] and options["group"]:
            raise CommandError("--group: give a group or --no-group, not both.")
        if options["no_services"] and options["service"]:
            raise CommandError("--service: give services or --no-services, not both.")
        group_id = component.group_id
        if options["group"] or options["no_group"]:
            group_id = components.one_group(group_ids(options["group"]))
        service_ids = [service.pk for service in component.services.all()]
        if options["service"] or options["no_services"]:
            service_ids = self.service_ids(options["service"])
        only = options["only_show_if_degraded"]
        saved = components.component_update(
            actor=actor,
            component=component,
            name=component.name if options["name"] is None else options["name"],
            description=(
                component.description if options["description"] is None else options["description"]
            ),
            group_id=group_id,
            only_show_if_degraded=component.only_show_if_degraded if only is None else only,
            service_ids=service_ids,
        )
        self.stdout.write(f"Saved {shown(saved.name)} (id {saved.pk}).")

    def do_order(self, actor: Any, **options: Any) -> None:
        group_id = components.one_group(group_ids(options["group"]))
        order = [component_named(reference).pk for reference in options["components"]]
        components.components_reorder(actor=actor, group_id=group_id, order=order)
        self.write_list()

    def do_remove(self, actor: Any, **options: Any) -> None:
        component = component_named(options["component"])
        components.component_delete(actor=actor, component=component)
        self.stdout.write(f"Removed {shown(component.name)} from the public page.")

    def service_ids(self, names: list[str]) -> list[int]:
        return [service_named(name, Environment.PRODUCTION).pk for name in names]

    def write_list(self) -> None:
        listed = list(
            Component.objects.prefetch_related("services").order_by("position", "name", "pk")
        )
        lines = selectors.component_lines(listed)
        if not lines:
            self.stdout.write("No components.")
        for line in lines:
            self.write_component(line.component, indent="")
            for member in line.members:
                self.write_component(member, indent="    ")

    def write_component(self, component: Component, *, indent: str) -> None:
        if component.is_group:
            self.stdout.write(
                f"{indent}{component.position:>2}. [group] {shown(component.name)} "
                f"(id {component.pk})"
            )
            return
        fed_by = ", ".join(service.name for service in component.services.all()) or "nothing"
        hidden = ", only shown if degraded" if component.only_show_if_degraded else ""
        self.stdout.write(
            f"{indent}{component.position:>2}. {shown(component.name)} (id {component.pk}) "
            f"{component.status}{hidden}; fed by {fed_by}"
        )
