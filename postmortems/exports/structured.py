"""The report as JSON, in the shape postmortems/schema/postmortem-v1.schema.json describes
(documented in docs/postmortem.md). Instants are ISO 8601 with their offset, durations are
seconds, money is a decimal string."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from postmortems.selectors import PostmortemReport

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "postmortem-v1.schema.json"


def _at(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def report_as_dict(report: PostmortemReport) -> dict[str, Any]:
    incident, postmortem = report.incident, report.postmortem
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": report.kind,
        "generated_at": _at(report.generated_at),
        "incident": {
            "id": incident.pk,
            "title": incident.title,
            "severity": incident.severity,
            "status": incident.status,
            "environment": incident.environment,
            "commander": incident.commander.get_username() if incident.commander else None,
            "summary": incident.summary,
            "services": [
                {"name": s.name, "environment": s.environment, "backend": s.backend}
                for s in report.services
            ],
            "instants": {name: _at(at) for name, _, at in report.instants},
            "duration_seconds": _seconds(report.duration),
            "rto_seconds": _seconds(incident.rto),
            "rpo_seconds": _seconds(incident.rpo),
            "time_to_restore_seconds": _seconds(incident.time_to_restore),
            "rto_met": incident.rto_met,
        },
        "postmortem": {
            "state": report.state,
            "revision": postmortem.revision if postmortem else 0,
            "created_by": (
                postmortem.created_by.get_username()
                if postmortem and postmortem.created_by
                else None
            ),
            "created_at": _at(postmortem.created_at) if postmortem else None,
            "published_by": (
                postmortem.published_by.get_username()
                if postmortem and postmortem.published_by
                else None
            ),
            "published_at": _at(postmortem.published_at) if postmortem else None,
            "summary": postmortem.summary if postmortem else incident.summary,
            "impact": {
                "users_affected": postmortem.users_affected if postmortem else None,
                "failed_requests": postmortem.failed_requests if postmortem else None,
                "data_loss": postmortem.data_loss if postmortem else "",
                "revenue": (
                    {
                        "amount": str(postmortem.revenue_impact),
                        "currency": postmortem.revenue_currency,
                    }
                    if postmortem and postmortem.revenue_impact is not None
                    else None
                ),
            },
            "root_cause": postmortem.root_cause if postmortem else "",
            "resolution": postmortem.resolution if postmortem else "",
            "prevention": postmortem.prevention if postmortem else "",
            "lessons_learned": postmortem.lessons_learned if postmortem else "",
        },
        "metrics": [
            {
                "name": m.name,
                "label": m.label,
                "seconds": _seconds(m.value),
                "target_seconds": _seconds(m.target),
                "met": m.met,
            }
            for m in report.metrics
        ],
        "timeline": {
            "filter": report.timeline_filter,
            "total": report.timeline_total,
            "starred": report.starred_total,
            "entries": [
                {
                    "id": row.id,
                    "at": _at(row.at),
                    "kind": row.kind,
                    "kind_label": row.kind_label,
                    "who": row.who,
                    "body": row.body,
                    "starred": row.starred,
                }
                for row in report.timeline
            ],
        },
        "action_items": [
            {
                "id": item.id,
                "title": item.title,
                "owner": item.owner or None,
                "due_on": _at(item.due_on),
                "done": item.done,
                "done_at": _at(item.done_at),
                "done_by": item.done_by or None,
                "ticket_url": item.ticket_url or None,
                "overdue": item.overdue,
            }
            for item in report.action_items
        ],
        "runs": [
            {
                "id": run.id,
                "state": run.state,
                "drill": run.drill,
                "dry_run": run.dry_run,
                "reason": run.reason,
                "confirmed_at": _at(run.confirmed_at),
                "started_at": _at(run.started_at),
                "finished_at": _at(run.finished_at),
                "duration_seconds": _seconds(run.duration),
                "target_seconds": _seconds(run.target),
                "met": run.met,
                "failure_reason": run.failure_reason,
                "steps": [
                    {
                        "position": step.position,
                        "group": step.group,
                        "service": step.service,
                        "backend": step.backend,
                        "from_version": step.from_version,
                        "target": step.target,
                        "state": step.state,
                        "attempts": step.attempts,
                        "enqueued_at": _at(step.enqueued_at),
                        "started_at": _at(step.started_at),
                        "applied_at": _at(step.applied_at),
                        "finished_at": _at(step.finished_at),
                        "queued_seconds": _seconds(step.queued),
                        "applying_seconds": _seconds(step.applying),
                        "settling_seconds": _seconds(step.settling),
                        "total_seconds": _seconds(step.total),
                        "error": step.error,
                    }
                    for step in run.steps
                ],
            }
            for run in report.runs
        ],
    }


def render_json(report: PostmortemReport) -> bytes:
    return json.dumps(report_as_dict(report), ensure_ascii=False, indent=1).encode()


def schema() -> dict[str, Any]:
    """The JSON Schema the export follows."""
    return json.loads(SCHEMA_PATH.read_text())  # type: ignore[no-any-return]
