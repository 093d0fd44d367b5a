"""The public page's 90 days of uptime bars: the worst state of each local day, "no data"
before a component existed, the incidents of each day, a group's members combined, the
uptime percentage, a bounded number of queries and nothing rendered unescaped."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from statuspage import services
from statuspage.models import Component, ComponentStatusChange, PublicIncident
from statuspage.status_changes import component_history_start, component_status_set
from statuspage.uptime import (
    NO_DATA,
    PARTIAL_OUTAGE_WEIGHT,
    WINDOW_DAYS,
    compute_uptime,
    from_json,
    page_uptime,
    to_json,
)
from tests.factories import incident_open

pytestmark = pytest.mark.django_db

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
TODAY = WINDOW_DAYS - 1  # the index of today's bar


def _component(name: str, *, created: datetime, group: Component | None = None) -> Component:
    component = Component.objects.create(name=name, created_at=created, group=group)
    component_history_start(component)
    return component


def _set(component: Component, status: str, at: datetime) -> None:
    assert component_status_set(component, status, at=at)


def _incident(
    actor, name: str, components: list[Component], *, opened: datetime, resolved: datetime | None
) -> PublicIncident:
    """A published incident, first posted at `opened` and resolved at `resolved`."""
    incident = incident_open()
    services.draft_publish(
        incident=incident,
        actor=actor,
        version=0,
        name=name,
        status="resolved" if resolved else "investigating",
        impact="major",
        body="What happened.",
        component_statuses={},
    )
    public = PublicIncident.objects.get(incident=incident)
    public.components.set(components)
    PublicIncident.objects.filter(pk=public.pk).update(created_at=opened, resolved_at=resolved)
    return public


def _day(days_ago: int, hour: int = 0, minute: int = 0, zone: ZoneInfo = UTC) -> datetime:
    local = NOW.astimezone(zone)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0) - timedelta(
        days=days_ago
    )


def test_ninety_days_end_today_and_days_before_the_component_are_no_data():
    checkout = _component("Checkout", created=_day(5, 9))

    bars = compute_uptime(now=NOW).components[checkout.pk]

    assert len(bars.days) == WINDOW_DAYS
    assert bars.days[TODAY].date == NOW.date()
    assert bars.days[0].date == NOW.date() - timedelta(days=WINDOW_DAYS - 1)
    assert [day.status for day in bars.days[: TODAY - 5]] == [NO_DATA] * (TODAY - 5)
    assert {day.status for day in bars.days[TODAY - 5 :]} == {"operational"}
    assert bars.days[0].status_label == "No data"


def test_an_outage_across_midnight_marks_both_days_and_not_the_next():
    checkout = _component("Checkout", created=_day(30))
    _set(checkout, "major_outage", _day(3, 22))
    _set(checkout, "operational", _day(2, 2))

    days = compute_uptime(now=NOW).components[checkout.pk].days

    assert days[TODAY - 3].status == "major_outage"
    assert days[TODAY - 2].status == "major_outage"
    assert days[TODAY - 1].status == "operational"
    assert days[TODAY - 4].status == "operational"


def test_a_change_exactly_at_midnight_belongs_to_the_day_it_starts():
    checkout = _component("Checkout", created=_day(30))
    _set(checkout, "partial_outage", _day(4, 12))
    _set(checkout, "operational", _day(3))  # midnight

    days = compute_uptime(now=NOW).components[checkout.pk].days

    assert days[TODAY - 4].status == "partial_outage"
    assert days[TODAY - 3].status == "operational"


def test_a_day_shows_its_worst_state_and_all_its_incidents(support_lead):
    checkout = _component("Checkout", created=_day(30))
    _set(checkout, "degraded_performance", _day(6, 8))
    _set(checkout, "major_outage", _day(6, 10))
    _set(checkout, "under_maintenance", _day(6, 11))
    _set(checkout, "operational", _day(6, 13))
    first = _incident(
        support_lead, "Slow card payments", [checkout], opened=_day(6, 8), resolved=_day(6, 9)
    )
    second = _incident(
        support_lead, "Payments down", [checkout], opened=_day(6, 10), resolved=_day(6, 11)
    )
    _incident(support_lead, "Old trouble", [checkout], opened=_day(9, 10), resolved=_day(9, 11))

    day = compute_uptime(now=NOW).components[checkout.pk].days[TODAY - 6]

    assert day.status == "major_outage"
    assert [(i.id, i.name) for i in day.incidents] == [
        (first.pk, "Slow card payments"),
        (second.pk, "Payments down"),
    ]


def test_an_incident_still_open_is_listed_on_every_day_since_it_was_posted(support_lead):
    checkout = _component("Checkout", created=_day(30))
    open_incident = _incident(
        support_lead, "Ongoing", [checkout], opened=_day(2, 23), resolved=None
    )

    days = compute_uptime(now=NOW).components[checkout.pk].days

    assert [i.id for i in days[TODAY - 2].incidents] == [open_incident.pk]
    assert [i.id for i in days[TODAY].incidents] == [open_incident.pk]
    assert days[TODAY - 3].incidents == []


def test_days_are_cut_at_midnight_in_the_configured_time_zone(settings):
    settings.TIME_ZONE = "America/New_York"
    new_york = ZoneInfo("America/New_York")
    checkout = _component("Checkout", created=_day(30, zone=new_york))
    # 03:00 UTC is still the evening before in New York.
    _set(checkout, "major_outage", _day(4, 22, zone=new_york))
    _set(checkout, "operational", _day(4, 23, zone=new_york))

    days = compute_uptime(now=NOW).components[checkout.pk].days

    assert days[TODAY].date == NOW.astimezone(new_york).date()
    assert days[TODAY - 4].status == "major_outage"
    assert days[TODAY - 3].status == "operational"


def test_the_short_day_when_clocks_go_forward_is_one_bar_of_23_hours(settings):
    settings.TIME_ZONE = "America/New_York"
    new_york = ZoneInfo("America/New_York")
    created = datetime(2026, 2, 1, tzinfo=new_york)
    checkout = _component("Checkout", created=created)
    short_day_starts = datetime(2026, 3, 8, tzinfo=new_york)  # 02:00 does not exist that day
    short_day_ends = datetime(2026, 3, 9, tzinfo=new_york)
    assert (short_day_ends - short_day_starts.astimezone(UTC)) == timedelta(hours=23)
    _set(checkout, "major_outage", short_day_starts)
    _set(checkout, "operational", short_day_ends)

    bars = compute_uptime(now=NOW).components[checkout.pk]

    index = [day.date for day in bars.days].index(date(2026, 3, 8))
    assert bars.days[index].status == "major_outage"
    assert bars.days[index - 1].status == "operational"
    assert bars.days[index + 1].status == "operational"
    # The outage counts for the 23 hours the day had, over the time the component existed.
    observed = (NOW - created).total_seconds()
    assert bars.percent == pytest.approx(100 * (1 - 23 * 3600 / observed))
    assert bars.percent != pytest.approx(100 * (1 - 24 * 3600 / observed))


def test_the_cached_form_survives_a_json_round_trip_as_redis_keeps_it(support_lead):
    store = Component.objects.create(name="Online store", is_group=True, created_at=_day(40))
    checkout = _component("Checkout 決済 💳", created=_day(20), group=store)
    _set(checkout, "partial_outage", _day(3, 10))
    _set(checkout, "operational", _day(3, 12))
    _incident(support_lead, "الدفع معطل 💳", [checkout], opened=_day(3, 10), resolved=_day(3, 12))
    uptime = compute_uptime(now=NOW)

    kept = json.loads(json.dumps(to_json(uptime)))

    assert from_json(kept) == uptime
    assert from_json(kept).components[checkout.pk].days[TODAY - 3].incidents[0].name == (
        "الدفع معطل 💳"
    )


def test_the_percentage_counts_major_outages_fully_and_partial_outages_partly():
    checkout = _component("Checkout", created=NOW - timedelta(days=10))
    _set(checkout, "major_outage", _day(5, 23, 30))
    _set(checkout, "operational", _day(4, 0, 30))  # one hour, across midnight
    _set(checkout, "partial_outage", _day(3, 10))
    _set(checkout, "operational", _day(3, 12))  # two hours
    _set(checkout, "degraded_performance", _day(2, 10))
    _set(checkout, "under_maintenance", _day(2, 12))
    _set(checkout, "operational", _day(2, 16))  # neither counts

    bars = compute_uptime(now=NOW).components[checkout.pk]

    observed = 10 * 86400
    downtime = 3600 + PARTIAL_OUTAGE_WEIGHT * 2 * 3600
    assert bars.percent == pytest.approx(100 * (1 - downtime / observed))
    assert bars.percent_text == "99.33 %"


def test_the_percentage_never_rounds_an_outage_up_to_a_hundred():
    checkout = _component("Checkout", created=NOW - timedelta(days=89))
    _set(checkout, "major_outage", _day(1, 10))
    _set(checkout, "operational", _day(1, 10, 1))

    bars = compute_uptime(now=NOW).components[checkout.pk]

    assert 99.99 < bars.percent < 100
    assert bars.percent_text == "99.99 %"


def test_history_older_than_the_window_gives_the_state_it_opens_with():
    checkout = _component("Checkout", created=NOW - timedelta(days=200))
    _set(checkout, "partial_outage", NOW - timedelta(days=150))

    bars = compute_uptime(now=NOW).components[checkout.pk]

    assert {day.status for day in bars.days} == {"partial_outage"}
    assert bars.percent == pytest.approx(100 * (1 - PARTIAL_OUTAGE_WEIGHT))


def test_a_group_shows_its_members_combined(support_lead):
    store = Component.objects.create(name="Online store", is_group=True, created_at=_day(40))
    checkout = _component("Checkout", created=_day(20), group=store)
    search = _component("Search", created=_day(10), group=store)
    _set(checkout, "major_outage", _day(5, 10))
    _set(checkout, "operational", _day(5, 12))
    _set(search, "degraded_performance", _day(5, 11))
    _set(search, "major_outage", _day(5, 11, 30))  # overlaps checkout's outage
    _set(search, "operational", _day(5, 13))
    _set(search, "partial_outage", _day(3, 1))
    _set(search, "operational", _day(3, 2))
    both = _incident(
        support_lead, "Store down", [checkout, search], opened=_day(5, 10), resolved=_day(5, 13)
    )

    uptime = compute_uptime(now=NOW)
    group = uptime.components[store.pk]

    assert group.days[TODAY - 21].status == NO_DATA
    assert group.days[TODAY - 20].status == "operational"
    assert group.days[TODAY - 5].status == "major_outage"
    assert group.days[TODAY - 3].status == "partial_outage"
    assert [i.id for i in group.days[TODAY - 5].incidents] == [both.pk]  # once, not twice
    # 10:00-13:00 down once however many members were down; observed since checkout began.
    observed = (NOW - _day(20)).total_seconds()
    downtime = 3 * 3600 + PARTIAL_OUTAGE_WEIGHT * 3600
    assert group.percent == pytest.approx(100 * (1 - downtime / observed))


def test_a_group_without_members_has_no_data():
    empty = Component.objects.create(name="Empty", is_group=True)

    bars = compute_uptime(now=NOW).components[empty.pk]

    assert {day.status for day in bars.days} == {NO_DATA}
    assert bars.percent is None and bars.percent_text == "No data"


def test_twenty_components_over_ninety_days_take_four_queries(django_assert_num_queries):
    group = Component.objects.create(name="Everything", is_group=True)
    components = [
        _component(f"Component {n}", created=NOW - timedelta(days=120), group=group)
        for n in range(20)
    ]
    ComponentStatusChange.objects.bulk_create(
        ComponentStatusChange(component=component, status=status, changed_at=_day(days_ago, hour))
        for component in components
        for days_ago in range(WINDOW_DAYS)
        for status, hour in (("degraded_performance", 3), ("operational", 4))
    )

    with django_assert_num_queries(4):
        uptime = compute_uptime(now=NOW)

    for component in [*components, group]:
        assert {d.status for d in uptime.components[component.pk].days} == {"degraded_performance"}
    # Degraded an hour a day is no downtime.
    assert uptime.components[group.pk].percent == 100.0


def test_the_page_renders_the_bars_in_a_bounded_number_of_queries(
    client, django_assert_max_num_queries
):
    for n in range(20):
        component = _component(f"Component {n}", created=timezone.now() - timedelta(days=95))
        _set(component, "partial_outage", timezone.now() - timedelta(days=3))
    with django_assert_max_num_queries(14):
        page = client.get(reverse("status_page")).content.decode()
    assert page.count('class="uptime-day ') == 20 * WINDOW_DAYS
    # Only the four days in partial outage are tab stops (every day is read out).
    assert page.count('tabindex="0"') == 20 * 4


def test_the_uptime_is_kept_in_the_cache(django_assert_num_queries):
    _component("Checkout", created=timezone.now() - timedelta(days=3))
    first = page_uptime()
    with django_assert_num_queries(0):
        again = page_uptime()
    assert again == first


def test_only_days_with_trouble_are_focusable_and_each_lists_its_incidents(client, support_lead):
    now = timezone.now()
    checkout = Component.objects.create(name="Checkout", created_at=now - timedelta(days=4))
    component_history_start(checkout)
    _set(checkout, "major_outage", now - timedelta(minutes=5))
    public = _incident(
        support_lead,
        "Payments failing",
        [checkout],
        opened=now - timedelta(minutes=5),
        resolved=None,
    )

    page = client.get(reverse("status_page")).content.decode()

    bars = page[page.index(f'id="uptime-{checkout.pk}"') :]
    bars = bars[: bars.index("</ol>")]
    days = re.findall(r'<li class="uptime-day uptime-([a-z_]+)"( tabindex="0")?>', bars)
    assert len(days) == WINDOW_DAYS
    assert days[-1] == ("major_outage", ' tabindex="0"') and days[0] == (NO_DATA, "")
    assert all(focus == "" for _status, focus in days[:-1])  # no data, or operational
    yesterday = bars[
        bars.rindex('<li class="uptime-day', 0, bars.rindex('<li class="uptime-day')) :
    ]
    assert "Operational" in yesterday and "no incidents" in yesterday  # still read out
    today = bars[bars.rindex('<li class="uptime-day') :]
    assert f'href="/status/incidents/{public.pk}"' in today
    assert "Payments failing" in today and "Major outage" in today
    assert 'aria-label="Checkout: the worst status of each of the last 90 days' in bars
    summary = page[page.index(f'id="uptime-{checkout.pk}"') :]
    summary = summary[: summary.index("</p>")]
    assert re.search(
        r"[0-9.]+ %</span> uptime over the last 90 days; 1 day with incidents", summary
    )


def test_the_summary_counts_the_days_with_incidents(support_lead):
    checkout = _component("Checkout", created=_day(30))
    _incident(support_lead, "First", [checkout], opened=_day(9, 10), resolved=_day(9, 11))
    _incident(support_lead, "Second", [checkout], opened=_day(5, 23), resolved=_day(4, 1))

    bars = compute_uptime(now=NOW).components[checkout.pk]

    assert bars.incident_days == 3
    assert bars.summary_text == "3 days with incidents"
    assert [d.notable for d in bars.days].count(True) == 3


@pytest.mark.parametrize(
    "name",
    [
        "決済が失敗しています",
        "Checkout 💳🔥 down",
        "التحقق من الدفع معطل",
        '<script>alert("x")</script><img src=x onerror=alert(1)>',
    ],
)
def test_incident_names_in_the_bars_are_escaped(
    client, support_lead, name, assert_page_markup_only
):
    now = timezone.now()
    checkout = Component.objects.create(name="Checkout", created_at=now - timedelta(days=4))
    component_history_start(checkout)
    _incident(support_lead, name, [checkout], opened=now - timedelta(hours=2), resolved=None)
    PublicIncident.objects.update(name=name)  # as given, past the publish's own cleaning

    page = client.get(reverse("status_page")).content.decode()

    bars = page[page.index(f'id="uptime-{checkout.pk}"') :]
    bars = bars[: bars.index("</ol>")]
    assert_page_markup_only(bars)
    if "<" in name:
        assert "&lt;script&gt;" in bars
    else:
        assert name in bars


def test_the_page_shows_a_groups_combined_bars_in_a_row_of_their_own(client):
    now = timezone.now()
    store = Component.objects.create(name="Online store", is_group=True)
    checkout = _component("Checkout", created=now - timedelta(days=3), group=store)
    search = _component("Search", created=now - timedelta(days=3), group=store)
    _set(search, "partial_outage", now - timedelta(minutes=5))

    page = client.get(reverse("status_page")).content.decode()

    group = page[page.index(f'id="component-{store.pk}"') :]
    header = group[group.index('<th scope="rowgroup">') : group.index("</th>")]
    assert "Online store" in header and "uptime" not in header  # not read as every row's header
    row = group[group.index('<tr class="group-uptime">') :]
    row = row[: row.index("</tr>")]
    assert f'id="uptime-{store.pk}"' in row and '<td colspan="2">' in row
    assert "(its components combined)" in row
    assert row.rindex("uptime-day uptime-partial_outage") > row.rindex(
        "uptime-day uptime-operational"
    )
    assert f'id="uptime-{checkout.pk}"' in page and f'id="uptime-{search.pk}"' in page


def test_the_page_has_a_legend_that_does_not_rely_on_colour(client):
    _component("Checkout", created=timezone.now() - timedelta(days=3))

    page = client.get(reverse("status_page")).content.decode()

    legend = page[page.index('class="uptime-legend"') :]
    legend = legend[: legend.index("</ul>")]
    for words in ("Degraded performance (taller, wide stripes)", "Partial outage", "No data"):
        assert words in legend
