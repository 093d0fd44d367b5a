"""Texts built from an incident's facts: internal notices and the customer notice (their
templates live in `MessageTemplate`, editable in the admin), and the public updates (their
templates are `UpdateTemplate`s, statuspage.update_templates). Templates name facts as
{placeholders}; only the names listed in `FACT_NAMES` are filled (for a public update only
`PUBLIC_FACT_NAMES`), anything else in braces is left as written (no attribute access, no
format-string tricks).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.utils import timezone

from incidents.models import Incident, IncidentStatus
from rollbacks.models import Run
from statuspage import conf
from statuspage.models import Component, MessageTemplate, PublicStatus

FACT_NAMES = (
    "title",
    "severity",
    "status",
    "components",
    "services",
    "started_at",
    "detected_at",
    "restored_at",
    "verified_at",
    "resolved_at",
    "outage_minutes",
    "run",
    "run_state",
    "run_steps",
    "run_progress",
    "run_elapsed",
    "incident_url",
    "status_url",
)
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")

# The public status a fresh draft suggests for each incident status.
PUBLIC_STATUS_FOR: dict[str, str] = {
    IncidentStatus.INVESTIGATING: PublicStatus.INVESTIGATING,
    IncidentStatus.IDENTIFIED: PublicStatus.IDENTIFIED,
    IncidentStatus.MITIGATING: PublicStatus.IDENTIFIED,
    IncidentStatus.MONITORING: PublicStatus.MONITORING,
    IncidentStatus.RESOLVED: PublicStatus.RESOLVED,
}

# The facts a public update (an update template) may name: none of the console's own (the
# incident's internal title, its severity and services, the room's link, a rollback run).
PUBLIC_FACT_NAMES = (
    "components",
    "status",
    "started_at",
    "detected_at",
    "restored_at",
    "verified_at",
    "resolved_at",
    "outage_minutes",
    "status_url",
)
# Anything in braces that reads as a placeholder, known or not (JSON-like text with spaces
# inside the braces is left alone).
_ANY_PLACEHOLDER = re.compile(r"\{([^{}\s]{1,60})\}")


def _when(instant: datetime | None) -> str:
    if instant is None:
        return "not yet"
    return f"{timezone.localtime(instant):%H:%M %Z on %d %b %Y}"


def _minutes(span: timedelta | None) -> str:
    if span is None:
        return "unknown"
    return str(max(0, int(span.total_seconds() // 60)))


def outage_duration(incident: Incident, *, now: datetime | None = None) -> timedelta:
    """How long customers have been (or were) affected: impact start to restore, or to now."""
    end = incident.restored_at or now or timezone.now()
    return end - incident.started_at  # type: ignore[no-any-return]


def affected_components(incident: Incident) -> list[Component]:
    """The components the incident's services feed: what the desk suggests as affected.
    In page order (a group's members where the group stands)."""
    fed = (
        Component.objects.filter(is_group=False, services__incidents=incident)
        .select_related("group")
        .distinct()
    )
    return sorted(fed, key=page_order)


def page_order(component: Component) -> tuple[int, str, int, int, str]:
    """Where `component` stands on the public page: its group's place, then its own."""
    if component.group is None:
        return (component.position, component.name, component.pk, 0, "")
    group = component.group
    return (group.position, group.name, group.pk, component.position, component.name)


def incident_facts(incident: Incident, *, run: Run | None = None) -> dict[str, str]:
    """Every placeholder's value for this incident (and rollback run, when given)."""
    components = affected_components(incident)
    base = conf.console_base_url()
    facts = {
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.get_status_display(),
        "components": ", ".join(c.name for c in components) or "some of our services",
        "services": ", ".join(s.name for s in incident.services.all()) or "no service named",
        "started_at": _when(incident.started_at),
        "detected_at": _when(incident.detected_at),
        "restored_at": _when(incident.restored_at),
        "verified_at": _when(incident.verified_at),
        "resolved_at": _when(incident.resolved_at),
        "outage_minutes": _minutes(outage_duration(incident)),
        "incident_url": f"{base}/incidents/{incident.pk}/",
        "status_url": f"{base}/status/",
        "run": "",
        "run_state": "",
        "run_steps": "",
        "run_progress": "",
        "run_elapsed": "",
    }
    if run is not None:
        steps = list(run.steps.select_related("service").order_by("position"))
        done = sum(1 for step in steps if step.is_finished)
        facts |= {
            "run": f"#{run.pk}",
            "run_state": run.get_state_display().lower(),
            "run_steps": "; ".join(
                f"{step.service.name} → {step.target_label} ({step.get_state_display().lower()})"
                for step in steps
            ),
            "run_progress": f"{done} of {len(steps)} step(s) finished",
            "run_elapsed": _minutes(run.duration),
        }
    return facts


def fill(template_text: str, facts: dict[str, str]) -> str:
    """`template_text` with each known {placeholder} replaced by its fact."""
    return _PLACEHOLDER.sub(lambda m: facts.get(m.group(1), m.group(0)), template_text)


def unknown_placeholders(text: str, known: tuple[str, ...] = PUBLIC_FACT_NAMES) -> list[str]:
    """The {placeholders} in `text` that are not among `known`, each once, in order."""
    found = dict.fromkeys(m.group(1) for m in _ANY_PLACEHOLDER.finditer(text))
    return [name for name in found if name not in known]


def public_facts(facts: dict[str, str]) -> dict[str, str]:
    """Of an incident's facts, those a public update may name (PUBLIC_FACT_NAMES)."""
    return {name: facts[name] for name in PUBLIC_FACT_NAMES}


def template(key: str) -> MessageTemplate:
    """The template for `key`; a missing row (deleted in the admin) gives a plain fallback."""
    found = MessageTemplate.objects.filter(key=key).first()
    if found is not None:
        return found
    return MessageTemplate(key=key, subject="{title}", body="{title}: {status}.")


def rendered(key: str, facts: dict[str, str]) -> tuple[str, str]:
    """(subject, body) of the template `key` filled with `facts`."""
    chosen = template(key)
    return fill(chosen.subject, facts), fill(chosen.body, facts)
