"""How the exports write instants, durations and amounts, so all three agree."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone


def clock(value: timedelta | None) -> str:
    """A duration as a stopwatch reads it (4:05, 1:02:09); an em dash when unknown."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}:{minutes:02d}:{seconds:02d}"
    return f"{sign}{minutes}:{seconds:02d}"


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
