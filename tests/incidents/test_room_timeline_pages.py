"""The room renders the latest timeline entries, and earlier ones a page at a time as the
reader scrolls up: every entry exactly once, in commit order, across the page boundaries and
across an entry committed while the reader was reading."""

from __future__ import annotations

import re

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from incidents import views
from incidents.models import TimelineEntry, TimelineKind
from incidents.timeline import timeline_append, timeline_append_all
from tests.factories import UserFactory, incident_open

# Positions in commit order are given when a transaction commits: these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)

ROW = re.compile(r'<tr id="entry-(\d+)"')
EARLIER = re.compile(r'hx-get="[^"]*\?before=(\d+)"[^>]*>(\d+) earlier entr')


@pytest.fixture
def reader(roles: dict) -> Client:
    client = Client()
    client.force_login(UserFactory(username="viewer", roles=["Viewer"]))
    return client


def fill(incident, count: int) -> list[int]:
    """`count` notes, committed in batches as a busy incident would; their ids in order."""
    ids: list[int] = []
    for start in range(0, count, 100):
        with transaction.atomic():
            created = timeline_append_all(
                [
                    TimelineEntry(
                        incident=incident,
                        kind=TimelineKind.NOTE,
                        body=f"note {number} — 記録 📈 עדכון <b>{number}</b>",
                        actor_label="bench",
                    )
                    for number in range(start, min(start + 100, count))
                ]
            )
        ids += [entry.pk for entry in created]
    return ids


def test_the_room_shows_the_latest_entries_and_the_rest_loads_page_by_page(reader, settings):
    incident = incident_open()
    opened = incident.timeline.get().pk
    everything = [opened, *fill(incident, 449)]
    room = reader.get(reverse("incident_room", args=[incident.pk])).content.decode()

    shown = [int(found) for found in ROW.findall(room)]
    assert shown == everything[-views.TIMELINE_PAGE :]
    pages = [shown]
    url = reverse("incident_timeline", args=[incident.pk])
    earlier = EARLIER.search(room)
    while earlier:
        before, count = int(earlier[1]), int(earlier[2])
        assert before == pages[0][0] and count == everything.index(before)
        answer = reader.get(url, {"before": before})
        assert answer.status_code == 200
        html = answer.content.decode()
        pages.insert(0, [int(found) for found in ROW.findall(html)])
        earlier = EARLIER.search(html)
    assert [len(page) for page in pages] == [50, 200, 200]
    assert [entry for page in pages for entry in page] == everything  # each once, in order
    assert "&lt;b&gt;3&lt;/b&gt;" in html and "<b>3</b>" not in html


def test_entries_committed_while_reading_come_after_and_never_in_an_earlier_page(reader):
    incident = incident_open()
    fill(incident, 300)
    room = reader.get(reverse("incident_room", args=[incident.pk])).content.decode()
    last_shown = int(ROW.findall(room)[-1])
    with transaction.atomic():
        late = timeline_append(
            incident=incident, kind=TimelineKind.NOTE, body="rolled back", actor_label="ic"
        )
    url = reverse("incident_timeline", args=[incident.pk])
    first_shown = int(EARLIER.search(room)[1])
    earlier = reader.get(url, {"before": first_shown}).content.decode()
    assert str(late.pk) not in ROW.findall(earlier)
    polled = reader.get(url, {"after": last_shown}).content.decode()
    assert ROW.findall(polled) == [str(late.pk)]


def test_a_short_timeline_has_nothing_earlier_to_load(reader):
    incident = incident_open()
    fill(incident, 5)
    room = reader.get(reverse("incident_room", args=[incident.pk])).content.decode()
    assert len(ROW.findall(room)) == 6 and "timeline-earlier" not in room


@pytest.mark.parametrize(
    "query",
    [{"before": "x"}, {"before": "٣"}, {"before": "9" * 19}, {"before": "1", "after": "1"}],
)
def test_a_bad_cursor_is_a_400_naming_it(reader, query):
    incident = incident_open()
    answer = reader.get(reverse("incident_timeline", args=[incident.pk]), query)
    assert answer.status_code == 400 and b"before must be a timeline entry id" in answer.content


def test_an_entry_of_another_incident_loads_nothing(reader):
    other = incident_open().timeline.get().pk
    incident = incident_open()
    answer = reader.get(reverse("incident_timeline", args=[incident.pk]), {"before": other})
    assert answer.status_code == 200 and not ROW.findall(answer.content.decode())
