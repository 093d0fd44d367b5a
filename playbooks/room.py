"""The playbooks' card in the incident room: choose a playbook, fill its parameters in,
draft it as a plan (registered with incidents.room from PlaybooksConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from incidents.models import Incident
from incidents.roles import COMMAND_PERMISSION
from incidents.room import RoomSection, register_room_section
from playbooks.forms import PlaybookChoiceForm
from playbooks.models import Playbook


def playbooks_context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    if not request.user.has_perm(COMMAND_PERMISSION) or not incident.is_open:
        return {"playbook_choice": None}
    return {
        "playbook_choice": PlaybookChoiceForm(),
        "playbooks": list(Playbook.objects.filter(archived=False)),
    }


def register() -> None:
    register_room_section(
        RoomSection("playbooks", "main", "playbooks/_room_card.html", playbooks_context)
    )
