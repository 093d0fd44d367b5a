"""The public pages' branding from settings (statuspage.branding): the colour checked at
start-up with the setting named, the text on it chosen by luminance for contrast, the
stylesheet that carries it (the pages allow no inline style), and the logo and link."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse
from django.utils import timezone

from statuspage import branding, maintenances
from statuspage.checks import status_page_branding
from statuspage.models import PublicIncident
from tests.factories import incident_open

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("written", "color"),
    [("#24478f", "#24478f"), ("#FFD33D", "#ffd33d"), ("#123", "#112233"), ("#AbC", "#aabbcc")],
)
def test_a_hex_colour_is_read_as_lowercase_rrggbb(written, color):
    assert branding.hex_color(written) == color


@pytest.mark.parametrize(
    "written", ["blue", "24478f", "#24478", "#24478fff", "#ggg", "#24478f;", " #123", "", "＃123"]
)
def test_anything_else_is_refused_naming_the_setting(written):
    with pytest.raises(branding.BrandingError, match="STATUS_PAGE_BRAND_COLOR .* not a hex"):
        branding.hex_color(written)


@pytest.mark.parametrize(
    ("color", "text"),
    [
        ("#000000", "#ffffff"),
        ("#ffffff", "#000000"),
        ("#24478f", "#ffffff"),
        ("#ffd33d", "#000000"),
        ("#707070", "#ffffff"),
        ("#808080", "#000000"),
        ("#ff0000", "#000000"),
    ],
)
def test_the_text_on_the_brand_is_black_or_white_whichever_contrasts_more(color, text):
    assert branding.text_color_on(color) == text


def test_every_colour_gets_text_of_at_least_aa_contrast():
    worst = min(
        branding.contrast_ratio(color, branding.text_color_on(color))
        for color in (f"#{grey:02x}{grey:02x}{grey:02x}" for grey in range(256))
    )
    assert 4.5 <= worst < 4.7
    assert round(branding.contrast_ratio("#000000", "#ffffff"), 1) == 21.0


def test_the_start_up_check_names_a_wrong_colour(settings):
    settings.STATUS_PAGE_BRAND_COLOR = "corporate blue"
    [error] = status_page_branding(None)
    assert error.id == "statuspage.E001"
    assert "STATUS_PAGE_BRAND_COLOR is 'corporate blue', not a hex colour" in error.msg
    with pytest.raises(SystemCheckError, match="STATUS_PAGE_BRAND_COLOR"):
        call_command("check")
    settings.STATUS_PAGE_BRAND_COLOR = "#24478f"
    assert status_page_branding(None) == []


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("STATUS_PAGE_LOGO_URL", "javascript:alert(1)"),
        ("STATUS_PAGE_LOGO_URL", "//cdn.example.com/logo.svg"),
        ("STATUS_PAGE_LOGO_URL", "https://cdn.example.com/a.svg; script-src *"),
        ("STATUS_PAGE_LOGO_URL", 'https://cdn.example.com/"onerror="x'),
        ("STATUS_PAGE_LOGO_URL", "https://cdn.example.com/logo\n.svg"),
        ("STATUS_PAGE_HOMEPAGE_URL", "/about"),
        ("STATUS_PAGE_HOMEPAGE_URL", "www.example.com"),
        ("STATUS_PAGE_HOMEPAGE_URL", "https://例え.jp/"),
    ],
)
def test_a_logo_or_homepage_that_is_no_usable_url_is_refused_at_start_up(settings, setting, value):
    setattr(settings, setting, value)
    [error] = status_page_branding(None)
    assert error.msg.startswith(f"{setting} is ")


def test_a_logo_from_elsewhere_is_allowed_by_the_pages_policy_and_nothing_else_is(settings):
    settings.STATUS_PAGE_LOGO_URL = "https://cdn.example.com:8443/brand/logo.svg"
    policy = branding.public_page_policy()
    assert "img-src 'self' data: https://cdn.example.com:8443;" in policy
    assert "script-src 'none'" in policy and "style-src" not in policy
    settings.STATUS_PAGE_LOGO_URL = "/static/brand/logo.svg"
    assert "img-src 'self' data:;" in branding.public_page_policy()


def test_the_stylesheet_carries_the_colours_and_changes_its_address_with_them(client, settings):
    settings.STATUS_PAGE_BRAND_COLOR = "#FFD33D"
    response = client.get(reverse("status_brand_css"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/css; charset=utf-8"
    assert "--brand: #ffd33d; --on-brand: #000000;" in response.content.decode()
    page = client.get(reverse("status_page")).content.decode()
    first = branding.brand().version
    assert f"{reverse('status_brand_css')}?v={first}" in page
    settings.STATUS_PAGE_BRAND_COLOR = "#24478f"
    assert branding.brand().version != first


def test_a_broken_setting_still_serves_the_pages_in_a_plain_band(client, settings):
    settings.STATUS_PAGE_BRAND_COLOR = "nope"
    settings.STATUS_PAGE_LOGO_URL = "https://cdn.example.com/logo.svg"
    css = client.get(reverse("status_brand_css")).content.decode()
    assert f"--brand: {branding.FALLBACK};" in css
    response = client.get(reverse("status_page"))
    assert response.status_code == 200
    assert "cdn.example.com" not in response.content.decode()


def test_the_logo_links_to_the_homepage_with_the_page_name_as_its_text(client, settings):
    settings.STATUS_PAGE_LOGO_URL = "https://cdn.example.com/logo.svg"
    settings.STATUS_PAGE_HOMEPAGE_URL = "https://www.example.com/"
    settings.STATUS_PAGE_NAME = "Acme status <b>"
    page = client.get(reverse("status_page")).content.decode()
    assert (
        '<a class="status-brand" href="https://www.example.com/"><img class="status-logo" '
        'src="https://cdn.example.com/logo.svg" alt="Acme status &lt;b&gt;" height="32"></a>'
    ) in page


def test_without_a_logo_the_name_links_to_the_page_itself(client):
    page = client.get(reverse("status_page")).content.decode()
    assert f'<a class="status-brand" href="{reverse("status_page")}">Backout status</a>' in page


def test_the_status_host_serves_the_stylesheet_at_its_root(client, settings):
    settings.STATUS_PAGE_HOST = "status.example.com"
    settings.ALLOWED_HOSTS = ["status.example.com", "testserver"]
    response = client.get("/brand.css", headers={"host": "status.example.com"})
    assert response.status_code == 200 and "--brand:" in response.content.decode()
    page = client.get("/", headers={"host": "status.example.com"}).content.decode()
    assert 'href="/brand.css?v=' in page


def test_every_public_page_wears_the_brand_and_allows_its_logo(
    client, settings, support_lead, publish
):
    settings.STATUS_PAGE_LOGO_URL = "https://cdn.example.com/logo.svg"
    settings.STATUS_PAGE_HOMEPAGE_URL = "https://www.example.com/"
    publish(support_lead, incident_open())
    public = PublicIncident.objects.get()
    start = timezone.now() + timedelta(days=1)
    maintenance = maintenances.maintenance_schedule(
        actor=support_lead,
        name="Database upgrade",
        scheduled_for=start,
        scheduled_until=start + timedelta(hours=1),
        body="We upgrade the orders database.",
        component_ids=[],
    )
    pages = [
        reverse("status_page"),
        reverse("status_incident", args=[public.pk]),
        reverse("status_history"),
        reverse("status_maintenance_public", args=[maintenance.pk]),
        reverse("status_subscribe"),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        assert 'src="https://cdn.example.com/logo.svg"' in page, url
        assert '<link rel="stylesheet" href="/status/brand.css' in page, url
        assert 'class="status-footer"' in page, url
        policy = response["Content-Security-Policy"]
        assert "img-src 'self' data: https://cdn.example.com;" in policy, url
        assert "script-src 'none'" in policy, url
