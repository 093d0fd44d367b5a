"""What the API reads and writes (shown in the OpenAPI document at /api/v1/openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema


class Problem(Schema):
    detail: str = Field(description="What went wrong, fit to show a person")
    errors: dict[str, list[str]] = Field(default_factory=dict, description="Refused fields")


# The error answers every operation may give.
ERRORS: dict[int, Any] = {400: Problem, 401: Problem, 403: Problem, 404: Problem, 429: Problem}


class IncidentIn(Schema):
    title: str = Field(description="At most 200 characters")
    severity: str = Field(description="P0 (worst) to P3")
    environment: str = "production"
    services: list[str] = Field(default_factory=list, description="Service names affected")
    summary: str = ""
    commander: str | None = Field(None, description="A commander's user name; default: you")
    started_at: datetime | None = Field(None, description="When impact began")
    detected_at: datetime | None = Field(None, description="When it was noticed; default: now")
    rto_minutes: int = 15
    rpo_minutes: int = 5


class IncidentChange(Schema):
    status: str | None = Field(None, description="investigating, identified, monitoring, …")
    severity: str | None = None
    reason: str = ""


class IncidentOut(Schema):
    id: int
    url: str
    title: str
    severity: str
    status: str
    environment: str
    commander: str | None
    services: list[str]
    summary: str
    started_at: datetime
    detected_at: datetime
    resolved_at: datetime | None


class NoteIn(Schema):
    body: str = Field(description="At most 5,000 characters")


class NoteOut(Schema):
    id: int
    incident: int
    created_at: datetime
    author: str


class ReleaseIn(Schema):
    version: str = Field(description="Unique per service, at most 100 characters")
    artifact: str = Field(description="Image, task definition ARN, S3 prefix, git SHA…")
    notes: str = ""


class ReleaseOut(Schema):
    id: int
    service: str
    environment: str
    version: str
    artifact: str
    shipped_at: datetime
    known_good: bool
    known_good_reason: str
    backup_saved: list[str] = Field(description="What was saved to undo it")


class ReleaseRegistered(ReleaseOut):
    created: bool
    backup: str = Field(description="What registering saved, or why nothing was")


class KnownGoodIn(Schema):
    known_good: bool = True
    reason: str = Field("", description="Why; at most 500 characters")


class RollbackIn(Schema):
    services: list[str] = Field(description="Names of the incident's services to roll back")
    to: Literal["known_good", "previous"] = Field(
        "known_good",
        description="Each service's last known-good release, or the revision before the live one",
    )
    reason: str = ""


class StepOut(Schema):
    position: int
    group: int
    service: str
    backend: str
    state: str
    from_version: str
    to_version: str
    to_previous: bool
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None


class RunOut(Schema):
    id: int
    url: str
    incident: int
    state: str
    reason: str
    dry_run: bool
    drill: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: str
    steps: list[StepOut]
