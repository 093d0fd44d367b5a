"""Subscribing from the public page: double opt-in, the same answer for known and unknown
addresses, bad input refused with the reason and nothing saved, the flood limits, and the
confirm / manage / unsubscribe pages (confirming and unsubscribing are POSTs)."""

from __future__ import annotations

import threading
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from incidents.errors import PermissionDenied
from statuspage import subscriptions
from statuspage.models import Component, MessageKind, Subscriber, SubscriberMessage
from tests.conftest import TEST_REDIS_URL
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def subscribe(client, email, *components, remote="203.0.113.7"):
    data = {"email": email, "component": [str(c) for c in components]}
    return client.post(reverse("status_subscribe"), data, REMOTE_ADDR=remote)


def test_the_public_page_carries_the_subscribe_form_with_its_components(
    client, checkout_component, search_component
):
    page = client.get(reverse("status_page")).content.decode()
    assert page.count('id="subscribe-email"') == 1
    assert f'action="{reverse("status_subscribe")}"' in page
    assert f'name="component" value="{checkout_component.pk}"' in page
    assert f'name="component" value="{search_component.pk}"' in page


def test_subscribing_saves_an_unconfirmed_subscriber_and_queues_only_a_confirmation(
    client, checkout_component
):
    response = subscribe(client, "  Ana@Example.COM ", checkout_component.pk)
    assert response.status_code == 200
    assert "Check your inbox" in response.content.decode()
    subscriber = Subscriber.objects.get()
    assert subscriber.email == "ana@example.com" and not subscriber.is_confirmed
    assert list(subscriber.components.all()) == [checkout_component]
    assert len(subscriber.token) >= 40
    assert [m.kind for m in SubscriberMessage.objects.all()] == [MessageKind.CONFIRMATION]


def test_subscribing_again_answers_alike_and_resends_only_after_a_while(client, checkout_component):
    first = subscribe(client, "ana@example.com")
    again = subscribe(client, "ana@example.com")
    other = subscribe(client, "nobody@example.com")
    normalise = lambda response, email: response.content.decode().replace(email, "X")  # noqa: E731
    assert normalise(first, "ana@example.com") == normalise(again, "ana@example.com")
    assert normalise(again, "ana@example.com") == normalise(other, "nobody@example.com")
    subscriber = Subscriber.objects.get(email="ana@example.com")
    assert subscriber.messages.count() == 1  # the second within CONFIRMATION_RESEND: none
    Subscriber.objects.filter(pk=subscriber.pk).update(
        confirmation_sent_at=subscriber.confirmation_sent_at - subscriptions.CONFIRMATION_RESEND
    )
    subscribe(client, "ana@example.com")
    assert subscriber.messages.count() == 2


def test_a_stranger_cannot_change_a_confirmed_subscribers_components(
    client, checkout_component, search_component
):
    subscribe(client, "ana@example.com", checkout_component.pk)
    subscriber = Subscriber.objects.get()
    subscriptions.subscriber_confirm(token=subscriber.token)
    subscribe(client, "ana@example.com", search_component.pk)
    assert list(subscriber.components.all()) == [checkout_component]


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("", "give an email address"),
        ("not-an-address", "not an email address"),
        ("ana@", "not an email address"),
        ("<script>@example.com", "not an email address"),
        ("ana\x00@example.com", "control characters"),
        ("ana\n@example.com", "control characters"),
        ("ana\u202e@example.com", "control characters"),
        ("a" * 64 + "@" + ".".join(["b" * 60] * 3) + "." + "c" * 8, "at most 254"),
        ("анна@example.com", "other than ASCII before the @ are not supported"),
        ("ana@" + "b" * 64 + ".example", "not a domain name"),
    ],
)
def test_a_bad_address_is_refused_with_its_reason_and_nothing_saved(client, email, reason):
    response = subscribe(client, email)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert not Subscriber.objects.exists() and not SubscriberMessage.objects.exists()


def test_an_address_of_254_characters_is_taken_and_255_refused(client):
    domain = ".".join(["b" * 60] * 3) + ".example"  # 190 characters
    longest = "a" * (254 - len(domain) - 1) + "@" + domain
    assert len(longest) == 254
    assert subscribe(client, longest).status_code == 200
    response = subscribe(client, "a" + longest)
    assert response.status_code == 400
    assert "at most 254 characters (255 given)" in response.content.decode()
    assert list(Subscriber.objects.values_list("email", flat=True)) == [longest]


def test_an_address_that_grows_when_normalised_is_refused_not_a_server_error(client):
    # "İ" lower-cases to two characters and the domain grows again in its IDNA form: the
    # length is checked on what would be stored (264 characters), not on what was typed.
    email = "a" * 236 + "@İİİİ.example.com"
    assert len(email) == 253
    response = subscribe(client, email)
    assert response.status_code == 400
    assert "at most 254 characters (264 given)" in response.content.decode()
    assert not Subscriber.objects.exists()


def test_cjk_and_right_to_left_domains_are_taken_in_their_idna_form(client):
    for email in ("ana@例え.jp", "ana@مثال.eg"):
        assert subscribe(client, email).status_code == 200
    assert sorted(Subscriber.objects.values_list("email", flat=True)) == [
        "ana@xn--mgbh0fb.eg",
        "ana@xn--r8jz45g.jp",
    ]


def test_a_unicode_domain_and_its_idna_form_are_one_subscriber(client):
    assert subscribe(client, "ana@例え.jp").status_code == 200
    assert subscribe(client, "ANA@XN--R8JZ45G.JP", remote="198.51.100.9").status_code == 200
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ana@xn--r8jz45g.jp"]
    assert SubscriberMessage.objects.count() == 1  # the second request resent nothing yet


def test_the_rate_holds_under_concurrent_requests_against_redis(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": TEST_REDIS_URL,
            "OPTIONS": {"serializer": "console.cache.JsonSerializer"},
        }
    }
    address = f"{uuid.uuid4().hex}@example.com"  # a counter no other run has touched
    barrier = threading.Barrier(30)
    outcomes: list[str] = []

    def one_request() -> None:
        barrier.wait()
        try:
            subscriptions.subscribe_rate_check_address(address)
        except subscriptions.SubscribeFlood:
            outcomes.append("refused")
        else:
            outcomes.append("taken")

    threads = [threading.Thread(target=one_request) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    limit = int(subscriptions.SUBSCRIBE_RATE_PER_ADDRESS.split("/")[0])
    assert outcomes.count("taken") == limit
    assert outcomes.count("refused") == 30 - limit


def test_an_unknown_component_a_group_or_junk_is_refused_and_nothing_saved(
    client, checkout_component
):
    group = Component.objects.create(name="Online store 🛒", is_group=True, position=0)
    for choice, reason in (
        (999_999, "unknown component 999999"),
        ("12abc", "unknown component"),
        ("١٢", "unknown component"),  # Arabic-Indic digits are not an id
        (group.pk, "is a group; choose the components in it"),
    ):
        response = subscribe(client, "ana@example.com", checkout_component.pk, choice)
        assert response.status_code == 400
        assert reason in response.content.decode()
    assert not Subscriber.objects.exists() and not SubscriberMessage.objects.exists()


def test_a_flood_for_one_address_is_refused_from_any_network(client):
    limit = int(subscriptions.SUBSCRIBE_RATE_PER_ADDRESS.split("/")[0])
    for number in range(limit):
        assert (
            subscribe(client, "ana@example.com", remote=f"198.51.100.{number}").status_code == 200
        )
    response = subscribe(client, "ana@example.com", remote="192.0.2.200")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many subscribe requests for this address" in response.content.decode()
    assert subscribe(client, "bo@example.com", remote="192.0.2.200").status_code == 200


def test_a_flood_from_one_client_is_refused_whatever_the_address(client):
    limit = int(subscriptions.SUBSCRIBE_RATE_PER_CLIENT.split("/")[0])
    for number in range(limit):
        assert subscribe(client, f"user{number}@example.com").status_code == 200
    response = subscribe(client, "late@example.com")
    assert response.status_code == 429
    assert "from your network" in response.content.decode()
    assert not Subscriber.objects.filter(email="late@example.com").exists()
    assert subscribe(client, "late@example.com", remote="192.0.2.1").status_code == 200


def test_confirming_takes_a_button_press_not_just_opening_the_link(client):
    subscribe(client, "ana@example.com")
    subscriber = Subscriber.objects.get()
    url = reverse("status_subscriber_confirm", args=[subscriber.token])
    page = client.get(url)
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    assert page["Referrer-Policy"] == "same-origin"
    subscriber.refresh_from_db()
    assert not subscriber.is_confirmed
    assert client.post(url).status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.is_confirmed


def test_an_unknown_or_malformed_token_answers_404(client):
    for token in ("nope", "x" * 65, "a\x00b"):
        for name in ("status_subscriber_confirm", "status_subscriber_manage", "status_unsubscribe"):
            url = reverse(name, args=["placeholder"]).replace("placeholder", token)
            assert client.get(url).status_code == 404
            assert client.post(url).status_code == 404


def test_the_manage_page_changes_components_and_refuses_a_group(
    client, checkout_component, search_component
):
    subscribe(client, "ana@example.com", checkout_component.pk)
    subscriber = Subscriber.objects.get()
    url = reverse("status_subscriber_manage", args=[subscriber.token])
    assert client.post(url, {"component": [str(search_component.pk)]}).status_code == 200
    assert list(subscriber.components.all()) == [search_component]
    group = Component.objects.create(name="Store", is_group=True)
    response = client.post(url, {"component": [str(group.pk)]})
    assert response.status_code == 400 and "is a group" in response.content.decode()
    assert list(subscriber.components.all()) == [search_component]
    assert client.post(url, {}).status_code == 200
    assert not subscriber.components.exists()  # none: every component


def test_one_click_unsubscribe_deletes_the_subscriber_without_a_csrf_token(client):
    subscribe(client, "ana@example.com")
    subscriber = Subscriber.objects.get()
    url = reverse("status_unsubscribe", args=[subscriber.token])
    assert client.get(url).status_code == 200  # the page with the button changes nothing
    assert Subscriber.objects.exists()
    response = client.post(url, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert not Subscriber.objects.exists() and not SubscriberMessage.objects.exists()
    assert client.post(url).status_code == 404


def test_the_subscribe_form_on_the_cached_page_works_without_a_csrf_token(settings):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert subscribe(strict, "ana@example.com").status_code == 200
    subscriber = Subscriber.objects.get()
    confirm = reverse("status_subscriber_confirm", args=[subscriber.token])
    assert strict.post(confirm).status_code == 403  # its own page keeps Django's check


def test_the_subscriber_pages_work_at_the_status_hosts_root(client, settings):
    settings.STATUS_PAGE_HOST = "status.example.com"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "status.example.com"]
    response = client.post(
        "/subscribe", {"email": "ana@example.com"}, HTTP_HOST="status.example.com"
    )
    assert response.status_code == 200
    token = Subscriber.objects.get().token
    assert (
        client.get(f"/subscribe/confirm/{token}", HTTP_HOST="status.example.com").status_code == 200
    )


def test_the_support_lead_lists_counts_and_removes_subscribers(support_lead):
    viewer = UserFactory(username="vic", roles=["Responder"])
    subscriptions.subscriber_subscribe(email="ana@example.com")
    subscriptions.subscriber_subscribe(email="bo@example.com")
    subscriptions.subscriber_confirm(token=Subscriber.objects.get(email="bo@example.com").token)
    counts = subscriptions.subscriber_counts()
    assert (counts.confirmed, counts.unconfirmed, counts.total) == (1, 1, 2)
    listed = subscriptions.subscriber_list(actor=support_lead, confirmed=True)
    assert [s.email for s in listed] == ["bo@example.com"]
    with pytest.raises(PermissionDenied):
        subscriptions.subscriber_list(actor=viewer)
    bo = listed[0]
    with pytest.raises(PermissionDenied):
        subscriptions.subscriber_remove(subscriber_id=bo.pk, actor=viewer)
    subscriptions.subscriber_remove(subscriber_id=bo.pk, actor=support_lead)
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ana@example.com"]


def test_the_command_counts_lists_and_removes_with_the_support_leads_role(support_lead):
    subscriptions.subscriber_subscribe(email="ana@例え.jp")
    subscriptions.subscriber_subscribe(email="bo@example.com")
    Subscriber.objects.filter(email="bo@example.com").update(confirmed_at=timezone.now())
    out = StringIO()
    call_command("status_subscribers", "count", stdout=out)
    assert out.getvalue().strip() == "1 confirmed, 1 not confirmed, 2 in all"
    out = StringIO()
    call_command("status_subscribers", "list", "--unconfirmed", "--as", "sam", stdout=out)
    assert out.getvalue().split("\t")[1:3] == ["ana@xn--r8jz45g.jp", "not confirmed"]
    UserFactory(username="vic", roles=["Responder"])
    with pytest.raises(CommandError, match="role needed"):
        call_command("status_subscribers", "list", "--as", "vic")
    with pytest.raises(CommandError, match="none is 'nobody@example.com'"):
        call_command("status_subscribers", "remove", "nobody@example.com", "--as", "sam")
    call_command("status_subscribers", "remove", "BO@example.com", "--as", "sam", stdout=out)
    assert "Removed bo@example.com" in out.getvalue()
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ana@xn--r8jz45g.jp"]


def test_the_form_offers_top_level_components_apart_from_the_group_before_them():
    shop = Component.objects.create(name="Online store", is_group=True, position=1)
    Component.objects.create(name="Checkout", group=shop, position=1)
    Component.objects.create(name="Public API", position=2)
    Component.objects.create(name="Dashboard", position=3)
    offered = [
        (group, [c.name for c in members]) for group, members in subscriptions.components_offered()
    ]
    assert offered == [("Online store", ["Checkout"]), ("", ["Public API", "Dashboard"])]
