"""Step options from a terminal: `--set [SERVICE:]KEY=VALUE` parsed into each service's raw
options (validated later by the same service the plan builder uses), and a service's options
printed as the plan builder shows them."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.management.base import CommandError

from incidents.models import Service
from rollbacks.services.step_options import option_views


def options_by_service(
    values: Sequence[str], services: Sequence[Service]
) -> dict[int, dict[str, str]]:
    """service id → {option: value} from `--set` values. `KEY=VALUE` applies to every
    service; `SERVICE:KEY=VALUE` to the one named."""
    by_name = {service.name: service for service in services}
    chosen: dict[int, dict[str, str]] = {service.pk: {} for service in services}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key.strip():
            raise CommandError(f"--set {value[:100]!r}: expected KEY=VALUE or SERVICE:KEY=VALUE")
        name, colon, option = key.strip().rpartition(":")
        targets = services
        if colon:
            if name not in by_name:
                raise CommandError(
                    f"--set {value[:100]!r}: {name[:80]!r} is not a service of this plan "
                    f"({', '.join(by_name)})"
                )
            targets = [by_name[name]]
        for service in targets:
            chosen[service.pk][option] = text
    return chosen


def options_text(service: Service) -> list[str]:
    """The lines that describe `service`'s options: each with its type, when it applies,
    its choices and what the infrastructure says."""
    views, problem = option_views(service)
    lines = [f"{service.name} ({service.get_backend_display()}) takes:"]
    if problem:
        lines.append(f"  (could not ask the infrastructure: {problem})")
    if not views:
        lines.append("  no options")
    for view in views:
        option = view.option
        head = f"  {option.name} ({option.type})"
        if option.default is not None:
            head += f", default {option.default}"
        if option.required:
            head += ", required"
        if view.conditions:
            head += ", when " + " and ".join(
                f"{name} is {' or '.join(allowed)}" for name, allowed in view.conditions.items()
            )
        lines.append(head + f": {option.label}")
        for choice in view.choices:
            detail = f" — {choice.detail}" if choice.detail else ""
            lines.append(f"      {choice.value}: {choice.label}{detail}")
        if view.minimum or view.maximum:
            lines.append(f"      between {view.minimum or '…'} and {view.maximum or '…'}")
        if view.note:
            lines.append(f"      {view.note}")
    return lines
