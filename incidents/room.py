"""What the apps built on the incident record add to the room, the dashboard and the room's
live stream.

incidents/ is the console's lowest app: none of its modules imports rollbacks, statuspage
or postmortems. Yet the room shows the rollback panel, the plan builder and the approvals,
the dashboard the requests awaiting approval, and the live stream a step's log lines:
those apps register them here in their AppConfig.ready(), and the room's views
(incidents.views) and stream (incidents.live) call what was registered. This module is
the only coupling; it knows the shapes of what is registered, never the apps.

Registering a name again replaces the earlier registration, so a ready() that runs twice
changes nothing. Everything registered is called per request (or per stream read), never
at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from django.http import HttpRequest

from incidents.models import Incident

# Where a card goes in the room: `main` above the timeline, `side` at the end of the side
# column (after the checklists); cards of one place keep the order they were registered in.
RoomPlace = Literal["main", "side"]

SectionContext = Callable[[HttpRequest, Incident], Mapping[str, Any]]
DashboardContext = Callable[[HttpRequest], Mapping[str, Any]]


@dataclass(frozen=True)
class RoomSection:
    """A card of the incident room, included from `template` at `place`.

    `context(request, incident)` gives what the card needs for the person looking; the
    room merges it into its own context (`incident`, `can_command`, the timeline, …).
    With `refetch_after` (timeline kinds), the live stream sends an event named `name`
    after an entry of those kinds, and each viewer fetches the card again on its own at
    `/incidents/<id>/parts/<name>`, rendered from `incident` and `context` alone: its
    controls depend on who is looking, so the stream cannot carry the card itself.
    """

    name: str
    place: RoomPlace
    template: str
    context: SectionContext
    refetch_after: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DashboardSection:
    """A card at the top of the dashboard, included from `template`, with
    `context(request)` added to the page's context."""

    name: str
    template: str
    context: DashboardContext


class PanelHtml(NamedTuple):
    """A panel rendered once for any viewer and once for commanders (with controls)."""

    viewer: str
    commander: str


@dataclass(frozen=True)
class LivePanel:
    """A part of the room the live stream sends again, rendered, in an event named `event`
    after entries of `after_kinds` (once per read however many arrived).
    `render(incident_id)` runs on one of the stream's database threads."""

    event: str
    after_kinds: frozenset[str]
    render: Callable[[int], PanelHtml]


class LinesRead(NamedTuple):
    """One read of a growing source of lines: the event's data (None when nothing is
    new), the position to read after next time, and whether more may follow at once."""

    data: str | None
    reached: int
    more: bool


@dataclass(frozen=True)
class LiveLines:
    """Lines the live stream sends without re-rendering anything (a step's log).

    Whoever stores lines announces `{event: source_id}` on the incident's channel
    (incidents.timeline.announce); the stream then calls `read(source_id, after)` until it
    says no more follow, sending each read as an event named `event`. `after` is the
    position reached so far, None on a feed's first read of that source.
    """

    event: str
    read: Callable[[int, int | None], LinesRead]


_room_sections: dict[str, RoomSection] = {}
_dashboard_sections: dict[str, DashboardSection] = {}
_live_panels: dict[str, LivePanel] = {}
_live_lines: dict[str, LiveLines] = {}


def register_room_section(section: RoomSection) -> None:
    """Show `section` in every incident room."""
    _room_sections[section.name] = section


def register_dashboard_section(section: DashboardSection) -> None:
    """Show `section` at the top of the dashboard."""
    _dashboard_sections[section.name] = section


def register_live_panel(panel: LivePanel) -> None:
    """Have the live stream send `panel` again after the entries it names."""
    _live_panels[panel.event] = panel


def register_live_lines(lines: LiveLines) -> None:
    """Have the live stream send the lines announced under `lines.event`."""
    _live_lines[lines.event] = lines


def room_sections(place: RoomPlace | None = None) -> list[RoomSection]:
    """The registered room cards (at `place`, when given), in registration order."""
    return [s for s in _room_sections.values() if place is None or s.place == place]


def room_part(name: str) -> RoomSection | None:
    """The registered card a viewer may fetch on its own as part `name`, if any."""
    section = _room_sections.get(name)
    return section if section is not None and section.refetch_after else None


def dashboard_sections() -> list[DashboardSection]:
    """The registered dashboard cards, in registration order."""
    return list(_dashboard_sections.values())


def live_panels() -> list[LivePanel]:
    """The panels the live stream re-renders, in registration order."""
    return list(_live_panels.values())


def live_lines(event: str) -> LiveLines | None:
    """The source of lines announced under `event`, if one is registered."""
    return _live_lines.get(event)
