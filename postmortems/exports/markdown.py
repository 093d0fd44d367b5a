"""The report as Markdown (CommonMark with GitHub-style tables).

Whatever people typed is escaped as HTML, everywhere: a note holding `<script>` or
`<img onerror=…>` must stay text when the file is rendered (GitHub, GitLab, an editor's
preview). The post-mortem's own prose (summary, root cause, …) keeps its Markdown; table
cells, which hold timeline notes anyone in the room wrote, also lose link and image syntax,
so that no cell becomes a link or loads an image.
"""

from __future__ import annotations

import html
import re

from postmortems.exports.text import (
    clock,
    count,
    instant,
    money,
    report_state,
    text_or,
    verdict,
    zone_name,
)
from postmortems.selectors import PostmortemReport

_LINK_SYNTAX = re.compile(r"([\[\]!`])")


def _text(value: str) -> str:
    """Prose with its HTML escaped (its Markdown kept)."""
    return html.escape(value, quote=False)


def _cell(value: str) -> str:
    """Text safe inside a table cell: HTML, pipes and link syntax escaped, line breaks kept
    as <br>."""
    escaped = _LINK_SYNTAX.sub(r"\\\1", _text(value.replace("\\", "\\\\")))
    return escaped.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def render_markdown(report: PostmortemReport) -> bytes:
    """The whole report; every timeline entry shown is one table row, in order."""
    incident, postmortem = report.incident, report.postmortem
    out: list[str] = [f"# {_text(report.title)}", ""]
    services = ", ".join(f"{s.name} ({s.get_backend_display()})" for s in report.services)
    out += [
        _row("", ""),
        "| --- | --- |",
        _row("Severity", incident.get_severity_display()),
        _row("Status", incident.get_status_display()),
        _row("Environment", incident.get_environment_display()),
        _row("Commander", incident.commander.get_username() if incident.commander else "none"),
        _row("Services", services or "none named"),
        _row("Duration", f"{clock(report.duration)} (impact start to resolution)"),
        _row("Report", report_state(report)),
        _row("Times", zone_name()),
        "",
    ]
    summary = postmortem.summary if postmortem else incident.summary
    out += ["## Summary", "", _text(text_or(summary)), ""]

    out += ["## Impact", ""]
    if postmortem is None:
        out += ["Not recorded yet.", ""]
    else:
        out += [
            f"- Users affected: {count(postmortem.users_affected)}",
            f"- Failed requests: {count(postmortem.failed_requests)}",
            f"- Data loss: {_text(text_or(postmortem.data_loss, 'not recorded'))}",
            f"- Revenue impact: {money(postmortem.revenue_impact, postmortem.revenue_currency)}",
            "",
        ]

    out += [
        "## Recovery metrics",
        "",
        _row("Phase", "Took", "Target", "Verdict"),
        "| --- | --- | --- | --- |",
    ]
    out += [_row(m.label, clock(m.value), clock(m.target), verdict(m.met)) for m in report.metrics]
    restore = incident.time_to_restore
    out += [
        "",
        f"RTO {clock(incident.rto)} (detection to service restored): {clock(restore)}, "
        f"{verdict(incident.rto_met)}. RPO {clock(incident.rpo)}.",
        "",
        "### Key instants",
        "",
        _row("Instant", "When"),
        "| --- | --- |",
    ]
    out += [_row(label, instant(at)) for _, label, at in report.instants]
    out.append("")

    for heading, field in (
        ("Root cause", "root_cause"),
        ("Resolution", "resolution"),
        ("Prevention", "prevention"),
        ("Lessons learned", "lessons_learned"),
    ):
        out += [f"## {heading}", "", _text(text_or(getattr(postmortem, field, ""))), ""]

    out += ["## Action items", ""]
    if report.action_items:
        out += [
            _row("Done", "Action", "Owner", "Due", "Tracked at"),
            "| --- | --- | --- | --- | --- |",
        ]
        for item in report.action_items:
            done = f"yes, {instant(item.done_at)} by {item.done_by}" if item.done else "no"
            due = item.due_on.isoformat() if item.due_on else "—"
            if item.overdue:
                due += " (overdue)"
            out.append(
                _row(done, item.title, item.owner or "nobody yet", due, item.ticket_url or "—")
            )
    else:
        out.append("None recorded.")
    out.append("")

    out += ["## Rollback runs", ""]
    if not report.runs:
        out += ["No rollback was run.", ""]
    for run in report.runs:
        tags = " (drill)" if run.drill else " (dry run)" if run.dry_run else ""
        out += [
            f"### Run #{run.id}{tags}: {run.state_label}",
            "",
            f"Started {instant(run.started_at)}, finished {instant(run.finished_at)}; took "
            f"{clock(run.duration)} against a {clock(run.target)} target ({verdict(run.met)}).",
            "",
        ]
        if run.reason:
            out += [f"Reason: {_cell(run.reason)}", ""]
        if run.failure_reason:
            out += [f"Failure: {_cell(run.failure_reason)}", ""]
        out += [
            _row(
                "#",
                "Group",
                "Service",
                "Backend",
                "From",
                "To",
                "State",
                "Queued",
                "Applying",
                "Settling",
                "Total",
            ),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for step in run.steps:
            out.append(
                _row(
                    str(step.position),
                    str(step.group),
                    step.service,
                    step.backend,
                    step.from_version or "—",
                    step.target,
                    step.state,
                    clock(step.queued),
                    clock(step.applying),
                    clock(step.settling),
                    clock(step.total),
                )
            )
        out.append("")

    shown = "every entry" if report.timeline_filter == "all" else "starred entries only"
    out += [
        "## Timeline",
        "",
        f"{len(report.timeline):,} of {report.timeline_total:,} entries ({shown}); "
        f"{report.starred_total:,} starred, marked ★.",
        "",
        _row("#", "Time", "Kind", "Who", "What happened"),
        "| --- | --- | --- | --- | --- |",
    ]
    out += [
        _row(
            str(row.id),
            instant(row.at),
            row.kind_label,
            row.who,
            ("★ " if row.starred else "") + row.body,
        )
        for row in report.timeline
    ]
    out += ["", f"Generated {instant(report.generated_at)} {zone_name()} by Backout.", ""]
    return "\n".join(out).encode()
