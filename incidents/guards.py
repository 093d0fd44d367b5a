"""Refusals other apps add to changes of the incident record.

incidents/ imports none of the apps built on it, yet some changes of an incident matter to
them: a plan waiting for approval was judged under the incident's severity, and lowering
the severity would let it through with fewer approvers. Those apps register a guard here
in their AppConfig.ready(); `incidents.services` asks every guard, under the incident's row
lock, before it changes the severity, and refuses with the first reason one gives.

Registering a name again replaces the earlier guard.
"""

from __future__ import annotations

from collections.abc import Callable

from incidents.models import Incident

# (incident, severity now, severity asked for) → why not, or None to allow it.
SeverityGuard = Callable[[Incident, str, str], str | None]

_severity_guards: dict[str, SeverityGuard] = {}


def register_severity_guard(name: str, guard: SeverityGuard) -> None:
    _severity_guards[name] = guard


def severity_refusal(incident: Incident, current: str, wanted: str) -> str | None:
    """The first registered guard's reason to refuse the change, or None."""
    for guard in _severity_guards.values():
        reason = guard(incident, current, wanted)
        if reason:
            return reason
    return None
