"""The status page's update templates from a terminal, through the services the console's
templates page calls (statuspage.update_templates), with their checks and role.

manage.py status_templates list
manage.py status_templates add "Payments slow" --title "Slow payments: {components}" \\
    --body "Card payments take longer than usual since {started_at}." --status identified \\
    --component Checkout --component-status degraded_performance --as sam
manage.py status_templates edit "Payments slow" --body-file update.md --as sam
manage.py status_templates order Investigating "Payments slow" Identified Monitoring \\
    Resolved --as sam
manage.py status_templates remove "Payments slow" --as sam
manage.py status_templates use "Payments slow" --incident 42 --as sam

A template is named by its id or its name. `use` replaces the incident's draft with the
template filled from the incident's facts; `--version` guards it as the desk does (a draft
saved since that version is left alone), and without it the draft's current version is used.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.errors import DomainError, PermissionDenied
from incidents.management.lookups import add_actor_argument, console_user, shown
from incidents.models import Incident
from statuspage import services, update_templates
from statuspage.management.lookups import component_named
from statuspage.models import ComponentStatus, PublicStatus, UpdateTemplate


def template_named(reference: str) -> UpdateTemplate:
    """The template `reference` names (an id, or its name)."""
    found = None
    if reference.isascii() and reference.isdigit() and len(reference) <= 18:
        found = UpdateTemplate.objects.filter(pk=int(reference)).first()
    if found is None and "\x00" not in reference:  # PostgreSQL text cannot hold NUL
        found = UpdateTemplate.objects.filter(name=reference).first()
    if found is None:
        raise CommandError(f"template: none is named {shown(reference)!r}.")
    return found


def body_given(options: dict[str, Any]) -> str | None:
    """The body from --body or --body-file (`-`: standard input), or None for neither."""
    if options["body"] is not None and options["body_file"] is not None:
        raise CommandError("--body: give --body or --body-file, not both.")
    if options["body_file"] is None:
        return options["body"]  # type: ignore[no-any-return]
    if options["body_file"] == "-":
        return sys.stdin.read()
    try:
        return Path(options["body_file"]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"--body-file: cannot read it ({type(error).__name__}).") from None


class Command(BaseCommand):
    help = "List, add, edit, order, remove and use the status page's update templates."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="the templates in order")
        add = actions.add_parser("add", help="add a template")
        add.add_argument("name")
        edit = actions.add_parser("edit", help="change what the options name, keep the rest")
        edit.add_argument("template")
        edit.add_argument("--name")
        order = actions.add_parser("order", help="put the templates in this order")
        order.add_argument("templates", nargs="+", metavar="template")
        remove = actions.add_parser("remove", help="delete a template")
        remove.add_argument("template")
        use = actions.add_parser("use", help="start an incident's draft from a template")
        use.add_argument("template")
        use.add_argument("--incident", type=int, required=True, help="the incident's id")
        use.add_argument("--version", type=int, help="the draft version you started from")
        for sub in (add, edit):
            sub.add_argument("--title")
            sub.add_argument("--body")
            sub.add_argument("--body-file", help="read the body from a file (-: stdin)")
            sub.add_argument("--status", choices=PublicStatus.values)
            sub.add_argument(
                "--component",
                action="append",
                default=[],
                help="a component it marks affected (name or id); repeat it for each",
            )
            sub.add_argument(
                "--component-status",
                choices=["", *ComponentStatus.values],
                help="their state ('' or none: as the incident's severity suggests)",
            )
        edit.add_argument("--no-components", action="store_true", help="mark none itself")
        for sub in (add, edit, order, remove, use):
            add_actor_argument(sub)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            self.write_list()
            return
        actor = console_user(options["username"])
        try:
            getattr(self, f"do_{action}")(actor, **options)
        except PermissionDenied as error:
            raise CommandError(f"--as {actor.username}: {error}") from error
        except DomainError as error:
            raise CommandError(str(error)) from error

    def do_add(self, actor: Any, **options: Any) -> None:
        created = update_templates.update_template_create(
            actor=actor,
            name=options["name"],
            title=options["title"] or "",
            body=body_given(options) or "",
            status=options["status"] or PublicStatus.INVESTIGATING,
            component_ids=[component_named(ref).pk for ref in options["component"]],
            component_status=options["component_status"] or "",
        )
        self.stdout.write(f"Added the template {shown(created.name)} (id {created.pk}).")

    def do_edit(self, actor: Any, **options: Any) -> None:
        template = template_named(options["template"])
        if options["no_components"] and options["component"]:
            raise CommandError("--component: give components or --no-components, not both.")
        component_ids = [component.pk for component in template.components.all()]
        if options["component"] or options["no_components"]:
            component_ids = [component_named(ref).pk for ref in options["component"]]
        body = body_given(options)

        def given(option: str, kept: str) -> str:
            return kept if options[option] is None else str(options[option])

        saved = update_templates.update_template_update(
            actor=actor,
            template=template,
            name=given("name", template.name),
            title=given("title", template.title),
            body=template.body if body is None else body,
            status=given("status", template.status),
            component_ids=component_ids,
            component_status=given("component_status", template.component_status),
        )
        self.stdout.write(f"Saved the template {shown(saved.name)} (id {saved.pk}).")

    def do_order(self, actor: Any, **options: Any) -> None:
        order = [template_named(reference).pk for reference in options["templates"]]
        update_templates.update_templates_reorder(actor=actor, order=order)
        self.write_list()

    def do_remove(self, actor: Any, **options: Any) -> None:
        template = template_named(options["template"])
        update_templates.update_template_delete(actor=actor, template=template)
        self.stdout.write(f"Deleted the template {shown(template.name)}.")

    def do_use(self, actor: Any, **options: Any) -> None:
        template = template_named(options["template"])
        incident = Incident.objects.filter(pk=options["incident"]).first()
        if incident is None:
            raise CommandError(f"--incident: there is no incident {options['incident']}.")
        version = options["version"]
        if version is None:
            version = services.draft_get(incident).version
        draft = update_templates.update_template_use(
            actor=actor, template=template, incident=incident, version=version
        )
        self.stdout.write(
            f"Draft of incident #{incident.pk} started from {shown(template.name)} "
            f"(version {draft.version}): {shown(draft.name)}. Publish it on the desk."
        )

    def write_list(self) -> None:
        listed = update_templates.update_templates_listed()
        if not listed:
            self.stdout.write("No update templates.")
        for template in listed:
            components = ", ".join(shown(c.name) for c in template.components.all())
            state = f" at {template.component_status}" if template.component_status else ""
            self.stdout.write(
                f"{template.position:>2}. {shown(template.name)} (id {template.pk}) "
                f"{template.status}: {shown(template.title)}; marks "
                f"{components or 'the suggested components'}{state}"
            )
