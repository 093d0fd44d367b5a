"""A step's options as a person or a client gives them, made into the parameters the step
stores, through its backend's one declaration of them (executors.options).

Every way in — the plan builder, `manage.py rollback --set key=value`, playbooks, the API —
hands `step_params` the same raw mapping. It resolves options of type "backup" (given as a
release's version, or taken from the target release when it saved one), validates against
the backend (and, with `live`, against the infrastructure now), and holds a data restore's
loss against the incident's recovery point objective. A refusal is a `StepOptionError`
naming the service and the option.

`option_views` is what the plan builder shows for one service: each option with its choices
(static, read live, or the releases that saved a backup) and a note.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from executors.base import Backend, BackendError, Connections
from executors.options import Choice, LiveOption, Option, OptionError
from incidents.errors import DomainError
from incidents.models import Incident, Release, Service
from rollbacks import conf
from rollbacks.engine.backends import backend_for

ACKNOWLEDGE_OPTION = "acknowledge_loss"


class StepOptionError(DomainError):
    """A step option that cannot be accepted, with the service and option it concerns."""

    def __init__(self, service: Service, option: str, message: str) -> None:
        super().__init__(f"{service.name}: {option}: {message}")
        self.service = service
        self.option = option
        self.reason = message


@dataclass(frozen=True)
class DataLoss:
    """What a restore loses: the writes after `after`, over `span`, against the RPO."""

    after: datetime.datetime
    span: datetime.timedelta
    rpo: datetime.timedelta

    @property
    def exceeds_rpo(self) -> bool:
        return self.span > self.rpo

    def text(self) -> str:
        when = self.after.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"writes after {when}, {duration_text(self.span)}, are not in the restored data "
            f"(the incident's RPO is {duration_text(self.rpo)})"
        )


def duration_text(span: datetime.timedelta) -> str:
    """ "17 minutes", "2 h 5 min", "3 d 4 h"."""
    seconds = max(0, int(span.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} s"


def backup_releases(service: Service, key: str) -> list[Release]:
    """The service's releases that saved a `key` backup, newest first."""
    return [
        release
        for release in service.releases.order_by("-shipped_at", "-pk")
        if isinstance(release.backup, dict) and release.backup.get(key)
    ]


def _effective(fields: tuple[Option, ...], params: Mapping[str, Any]) -> dict[str, Any]:
    """The options' values as given, defaults where none is: what `when` conditions read."""
    return {
        option.name: params.get(option.name) or option.default
        for option in fields
        if params.get(option.name) is not None or option.default is not None
    }


def _resolve_backups(
    service: Service, release: Release | None, fields: tuple[Option, ...], given: dict[str, Any]
) -> dict[str, Any]:
    params = dict(given)
    for option in fields:
        if option.type != "backup" or option.backup_key is None:
            continue
        value = params.get(option.name)
        if isinstance(value, str) and value.strip():
            chosen = next(
                (r for r in backup_releases(service, option.backup_key) if r.version == value),
                None,
            )
            if chosen is None:
                raise StepOptionError(
                    service, option.name, f"no release {value.strip()[:100]!r} saved one"
                )
            params[option.name] = chosen.backup[option.backup_key]
            params["backup_release"] = chosen.version
        elif value in (None, "") and option.applies(_effective(fields, params)):
            saved = (release.backup or {}).get(option.backup_key) if release else None
            if saved:
                params[option.name] = saved
                params["backup_release"] = release.version if release else ""
            else:
                params.pop(option.name, None)
    return params


def step_params(
    service: Service,
    *,
    given: Mapping[str, Any],
    release: Release | None = None,
    incident: Incident | None = None,
    live: bool = False,
    connections: Connections | None = None,
) -> dict[str, Any]:
    """The parameters a step on `service` stores for the options `given` (strings or JSON
    values); StepOptionError naming the option for anything refused. With `live`, values
    are also held against the infrastructure (a revision that exists, a time inside the
    restorable window) and, with `incident`, a restore losing more than its RPO needs a
    written acknowledgement."""
    if not isinstance(given, Mapping):
        raise StepOptionError(service, "options", "must be an object of option names to values")
    try:
        backend = backend_for(service, connections=connections)
    except BackendError as error:
        raise StepOptionError(service, "config", str(error)) from error
    fields = backend.option_fields()
    params = _resolve_backups(service, release, fields, dict(given))
    if release is not None and release.artifact:
        params = backend.pin_release(params, release.artifact)
    try:
        cleaned = backend.validate_params(params, live=live)
    except OptionError as error:
        raise StepOptionError(service, error.option, error.reason) from error
    if live and incident is not None:
        loss = data_loss(backend, cleaned, incident)
        if loss is not None and loss.exceeds_rpo and not cleaned.get(ACKNOWLEDGE_OPTION):
            raise StepOptionError(
                service,
                ACKNOWLEDGE_OPTION,
                f"{loss.text()}; write an acknowledgement of the loss to go on",
            )
    return cleaned


def data_loss(backend: Backend, params: Mapping[str, Any], incident: Incident) -> DataLoss | None:
    """What restoring with `params` loses, or None when the step restores no data."""
    after = backend.writes_lost_after(params)
    if after is None:
        return None
    return DataLoss(after=after, span=timezone.now() - after, rpo=incident.rpo)


@dataclass
class OptionView:
    """One option as the plan builder shows it for one service."""

    option: Option
    choices: tuple[Choice, ...] = ()
    note: str = ""
    minimum: str | None = None
    maximum: str | None = None
    value: Any = None
    error: str = ""
    conditions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_backup(self) -> bool:
        return self.option.type == "backup"


def option_views(
    service: Service, *, values: Mapping[str, Any] | None = None
) -> tuple[list[OptionView], str]:
    """The options of a step on `service` with what the infrastructure says about them now,
    and why it could not be asked (an empty string when it could)."""
    backend = backend_for(service)
    live: dict[str, LiveOption] = {}
    problem = ""
    limit = conf.live_read_seconds(service.backend)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-options")
    try:
        live = pool.submit(backend.live_options).result(timeout=limit)
    except FutureTimeout:
        problem = f"no answer in {limit:g} s"
    except Exception as error:  # a page shows any backend failure, never raises it
        problem = f"{type(error).__name__}: {error}"[:300]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    views = []
    for option in backend.option_fields():
        facts = live.get(option.name, LiveOption())
        choices = option.choices or facts.choices
        if option.type == "backup" and option.backup_key:
            key = option.backup_key
            choices = tuple(
                Choice(
                    r.version,
                    r.version,
                    detail=" · ".join(
                        part
                        for part in (backend.describe_backup(key, r.backup[key]), _saved_at(r))
                        if part
                    ),
                )
                for r in backup_releases(service, key)
            )
        views.append(
            OptionView(
                option=option,
                choices=choices,
                note=facts.note,
                minimum=facts.minimum,
                maximum=facts.maximum,
                value=(values or {}).get(option.name, option.default),
                conditions={name: list(allowed) for name, allowed in option.when.items()},
            )
        )
    return views, problem


def _saved_at(release: Release) -> str:
    if release.backup_at is None:
        return ""
    return "saved " + release.backup_at.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
