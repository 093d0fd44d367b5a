"""Other ways to draft a plan than naming services, registered by the apps that provide
them (playbooks registers "playbook" in its AppConfig.ready): the terminal command reaches
them without rollbacks importing those apps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from incidents.errors import DomainError
from incidents.models import Incident
from incidents.roles import User
from rollbacks.models import Run


class PlanSource(Protocol):
    def __call__(
        self,
        *,
        incident: Incident,
        name: str,
        parameters: Mapping[str, Any],
        actor: User,
        reason: str,
        dry_run: bool,
    ) -> Run: ...


_sources: dict[str, PlanSource] = {}


def register_plan_source(kind: str, draft: PlanSource | Callable[..., Run]) -> None:
    _sources[kind] = draft  # type: ignore[assignment]


def plan_source(kind: str) -> PlanSource:
    """The registered drafter of `kind`; DomainError when no app provides it."""
    if kind not in _sources:
        raise DomainError(f"No {kind}s are installed.")
    return _sources[kind]
