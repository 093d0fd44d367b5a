"""How the exports write instants, durations and amounts, so all three agree."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from incidents.templatetags.console import clock
from postmortems.selectors import PostmortemReport

__all__ = [
    "clock",
    "count",
    "instant",
    "money",
    "report_state",
    "text_or",
    "verdict",
    "zone_name",
]


def instant(value: datetime | None) -> str:
    """An instant in the console's time zone, to the second."""
    if value is None:
        return "—"
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S}"


def zone_name() -> str:
    return timezone.get_current_timezone_name()


def verdict(met: bool | None) -> str:
    return "—" if met is None else "met" if met else "missed"


def count(value: int | None) -> str:
    return "not recorded" if value is None else f"{value:,}"


def money(amount: Decimal | None, currency: str) -> str:
    return "not recorded" if amount is None else f"{amount:,.2f} {currency}"


def text_or(value: str, empty: str = "Not written yet.") -> str:
    return value.strip() or empty


def report_state(report: PostmortemReport) -> str:
    """The report's state for its header: who published it and when, and its revision."""
    postmortem = report.postmortem
    state = report.state_label
    if postmortem is not None and postmortem.published_at:
        by = postmortem.published_by.get_username() if postmortem.published_by else "?"
        state += f" by {by} on {instant(postmortem.published_at)}"
    if postmortem is not None:
        state += f" (revision {postmortem.revision})"
    return state
