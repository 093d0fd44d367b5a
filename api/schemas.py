"""What the API reads and writes (shown in the OpenAPI document at /api/v1/openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema
from pydantic import field_validator


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


class WatchOut(Schema):
    state: str = Field(description="watching, passed (held), regressed, or ended (early)")
    rounds: int = Field(description="Rounds of checks run so far")
    started_at: datetime
    ends_at: datetime
    next_check_at: datetime | None = Field(description="While watching: the next round")
    last_checked_at: datetime | None
    last_summary: str = Field(description="What the last round found")


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
    watch: WatchOut | None = Field(
        None, description="The checks run again after the run succeeded, if any"
    )


class AutoRollback(Schema):
    enabled: bool = Field(description="Roll back automatically on alerts")
    severities: list[str] = Field(description="The incident severities it acts on")
    max_release_age_hours: int = Field(description="Only while the live release is younger")
    start: bool = Field(description="Start the run when the approval policy asks no approver")


class AutoRollbackChange(Schema):
    """The fields given change; those left out (or null) stay as they are."""

    enabled: bool | None = Field(None, strict=True)
    severities: list[str] | None = Field(None, description="P0 to P3; [] for none")
    max_release_age_hours: int | None = Field(None, strict=True, description="1 to 720")
    start: bool | None = Field(None, strict=True)


class ServiceOut(Schema):
    id: int
    url: str = Field(description="The service's page in the console")
    name: str
    environment: str
    backend: str
    description: str
    auto_rollback: AutoRollback = Field(description="The policy as the automation applies it")
    auto_rollback_ignored: str = Field(
        description="Why the stored policy is ignored (automation off); empty when it applies"
    )
    signal_queries: dict[str, str] = Field(description="PromQL per signal the helper reads")


class ServiceChange(Schema):
    auto_rollback: AutoRollbackChange | None = None
    signal_queries: dict[str, str] | None = Field(
        None,
        description="Signals to change, each at most 2,000 characters; an empty query "
        "forgets its signal; signals left out stay",
    )

    @field_validator("auto_rollback", mode="before")
    @classmethod
    def policy_is_an_object(cls, value: Any) -> Any:
        # A Schema reads any value's attributes: "on" would pass as a change of nothing.
        if value is not None and not isinstance(value, dict):
            raise ValueError("An object of the policy's fields to change.")
        return value


class CandidateOut(Schema):
    name: str = Field(description="The service name an import gives it")
    state: Literal["new", "same", "changed"]
    importable: bool = Field(description="New or changed, and its backend takes its config")
    backend: str
    target_config: dict[str, Any]
    description: str
    live: str = Field(description="What it runs now, as the platform says")
    notes: list[str]
    problem: str = Field(description="Why it cannot be imported as listed; empty if it can")
    service: str | None = Field(description="The console's service it is, or was changed from")
    was: dict[str, Any] | None = Field(
        description="For a changed one: the values it has now where an import would write"
    )


class DiscoveryOut(Schema):
    source: str
    environment: str
    candidates: list[CandidateOut]


class DiscoveryImportIn(Schema):
    names: list[str] = Field(description="Names as the listing gives them (new or changed)")


class ImportedService(Schema):
    id: int
    url: str
    name: str
    environment: str
    backend: str


class ImportedOut(Schema):
    imported: list[ImportedService] = Field(
        description="Services created or updated; one listed the same is left as it is"
    )
