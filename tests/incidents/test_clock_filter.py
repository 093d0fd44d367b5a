from datetime import timedelta

import pytest

from incidents.templatetags.console import clock


@pytest.mark.parametrize(
    ("duration", "shown"),
    [
        (None, "—"),
        (timedelta(seconds=5.7), "0:05"),
        (timedelta(minutes=6, microseconds=77666), "6:00"),
        (timedelta(hours=1, minutes=2, seconds=9), "1:02:09"),
        (timedelta(seconds=-90), "-1:30"),
    ],
)
def test_durations_read_like_a_stopwatch(duration, shown):
    assert clock(duration) == shown
