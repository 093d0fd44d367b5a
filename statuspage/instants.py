"""How the public JSON documents write an instant (Statuspage v2's shape), shared by the
incident and the maintenance documents."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def iso(moment: datetime | None) -> str | None:
    """`moment` in the console's time zone, to the millisecond, with its offset; None stays
    None."""
    if moment is None:
        return None
    return timezone.localtime(moment).isoformat(timespec="milliseconds")
