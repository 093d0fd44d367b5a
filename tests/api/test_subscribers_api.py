"""The status page's subscribers over the API: counted and listed, and removed, only with
`statuspage:write` and the Support Lead's role (addresses are personal data)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from statuspage.models import Component, Subscriber

pytestmark = pytest.mark.django_db
LEAD = ["Support Lead"]
WRITE = "statuspage:write"
PATH = "/status-page/subscribers"


@pytest.fixture
def subscribers(db) -> dict[str, Subscriber]:
    checkout = Component.objects.create(name="Checkout 結帳")
    ana = Subscriber.objects.create(email="ana@xn--r8jz45g.jp", confirmed_at=timezone.now())
    ana.components.set([checkout])
    bo = Subscriber.objects.create(email="bo@example.com")
    return {"ana": ana, "bo": bo}


def test_the_support_lead_reads_counts_and_the_list(api_as, subscribers):
    response = api_as(LEAD, WRITE).call("get", PATH)
    assert response.status_code == 200
    body = response.json()
    assert (body["confirmed"], body["unconfirmed"], body["total"]) == (1, 1, 2)
    ana = next(s for s in body["subscribers"] if s["email"] == "ana@xn--r8jz45g.jp")
    assert ana["confirmed"] is True and ana["components"][0]["name"] == "Checkout 結帳"
    assert "token" not in ana  # the token is the subscriber's own key, never shown
    only = api_as(LEAD, WRITE).call("get", f"{PATH}?confirmed=false").json()
    assert [s["email"] for s in only["subscribers"]] == ["bo@example.com"]


def test_reading_needs_the_write_scope_and_the_role(api_as, subscribers):
    assert api_as(LEAD, "read").call("get", PATH).status_code == 403
    demoted = api_as(LEAD, WRITE).demote("Viewer")  # the role lost after the token was made
    assert demoted.call("get", PATH).status_code == 403
    assert Client().get(f"/api/v1{PATH}").status_code == 401


def test_the_support_lead_removes_a_subscriber(api_as, subscribers):
    lead = api_as(LEAD, WRITE)
    assert lead.call("delete", f"{PATH}/{subscribers['bo'].pk}").status_code == 204
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ana@xn--r8jz45g.jp"]
    assert lead.call("delete", f"{PATH}/{subscribers['bo'].pk}").status_code == 404
    assert lead.call("delete", f"{PATH}/abc").status_code == 400


def test_removing_needs_the_role_before_anything_is_told(api_as, subscribers):
    viewer = api_as(LEAD, WRITE).demote("Viewer")
    assert viewer.call("delete", f"{PATH}/{subscribers['ana'].pk}").status_code == 403
    assert viewer.call("delete", f"{PATH}/999999").status_code == 403
    assert Subscriber.objects.count() == 2
