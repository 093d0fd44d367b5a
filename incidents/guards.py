"""Refusals other apps add to changes of the incident record (and of its releases).

incidents/ imports none of the apps built on it, yet some changes of an incident matter to
them: a plan waiting for approval was judged under the incident's severity, and lowering
the severity would let it through with fewer approvers. Those apps register a guard here
in their AppConfig.ready(); `incidents.services` asks every guard, under the incident's row
lock, before it changes the severity, and refuses with the first reason one gives.

A person marking a release known-good is asked of every known-good guard too, before any
lock is taken (a guard may ask the infrastructure): the rollbacks refuse while the
service's verification checks fail, unless the person says why.

Registering a name again replaces the earlier guard.
"""

from __future__ import annotations

from collections.abc import Callable

from incidents.models import Incident, Release

# (incident, severity now, severity asked for) → why not, or None to allow it.
SeverityGuard = Callable[[Incident, str, str], str | None]

_severity_guards: dict[str, SeverityGuard] = {}

# (release, the reason typed) → why not, or None to allow marking it known-good.
KnownGoodGuard = Callable[[Release, str], str | None]

_known_good_guards: dict[str, KnownGoodGuard] = {}


def register_severity_guard(name: str, guard: SeverityGuard) -> None:
    _severity_guards[name] = guard


def severity_refusal(incident: Incident, current: str, wanted: str) -> str | None:
    """The first registered guard's reason to refuse the change, or None."""
    for guard in _severity_guards.values():
        reason = guard(incident, current, wanted)
        if reason:
            return reason
    return None


def register_known_good_guard(name: str, guard: KnownGoodGuard) -> None:
    _known_good_guards[name] = guard


def known_good_refusal(release: Release, reason: str) -> str | None:
    """The first registered guard's reason not to let a person mark `release` known-good."""
    for guard in _known_good_guards.values():
        refusal = guard(release, reason)
        if refusal:
            return refusal
    return None
