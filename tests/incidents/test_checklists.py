import pytest

from incidents import services
from incidents.errors import PermissionDenied
from incidents.models import TimelineKind
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


def _first_item(incident):
    return incident.checklists.first().items.first()


def test_ticking_an_item_records_who_and_when(roles):
    responder = UserFactory(roles=["Responder"])
    item = services.checklist_item_set(
        item=_first_item(incident_open()), done=True, actor=responder
    )
    assert item.done_by == responder
    assert item.done_at is not None
    assert not item.done_automatically


def test_unticking_clears_who_and_when(roles):
    responder = UserFactory(roles=["Responder"])
    item = _first_item(incident_open())
    services.checklist_item_set(item=item, done=True, actor=responder)
    item = services.checklist_item_set(item=item, done=False, actor=responder)
    assert item.done_at is None
    assert item.done_by is None


def test_every_tick_and_untick_is_on_the_timeline(roles):
    responder = UserFactory(roles=["Responder"])
    incident = incident_open()
    item = _first_item(incident)
    services.checklist_item_set(item=item, done=True, actor=responder)
    services.checklist_item_set(item=item, done=False, actor=responder)
    entries = incident.timeline.filter(kind=TimelineKind.CHECKLIST).order_by("id")
    assert [e.payload["done"] for e in entries] == [True, False]


def test_passing_check_ticks_an_item_without_a_person():
    incident = incident_open()
    item = incident.checklists.get(kind="post_rollback").items.get(check_key="http_health")
    item = services.checklist_item_set(
        item=item, done=True, actor=None, automatically=True, reason="health check passed"
    )
    assert item.done_automatically
    entry = incident.timeline.filter(kind=TimelineKind.CHECKLIST).get()
    assert entry.who == "verification"


def test_viewer_cannot_tick_items(roles):
    viewer = UserFactory(roles=["Viewer"])
    item = _first_item(incident_open())
    with pytest.raises(PermissionDenied):
        services.checklist_item_set(item=item, done=True, actor=viewer)
    item.refresh_from_db()
    assert item.done_at is None
