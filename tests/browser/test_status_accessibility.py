"""The public status pages pass axe-core (run in Chromium through Playwright) with no
violation: the page with an active incident in light and dark mode, on a desktop and a
phone, and the incident, history, subscription and maintenance pages. Also: the brand colour from
settings reaches the page through its stylesheet, the text on it is chosen for contrast,
the skip link and focus are visible, and nothing breaks the pages' policy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.conf import LazySettings
from django.core.cache import cache
from django.urls import reverse
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, expect

from tests.browser.status_seed import SeededPage, seed_status_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# WCAG 2.2 A and AA, and axe's best practices (landmarks, one main, headings in order…).
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


@pytest.fixture
def seeded(settings: LazySettings) -> SeededPage:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    return seed_status_page()


@contextmanager
def _open(
    browser: Browser, *, color_scheme: str = "light", viewport: dict[str, int] = DESKTOP
) -> Iterator[tuple[Page, list[str]]]:
    context = browser.new_context(
        color_scheme=color_scheme,  # type: ignore[arg-type]
        viewport=viewport,  # type: ignore[arg-type]
        # axe is injected through Playwright's own evaluation; the pages allow no script.
        bypass_csp=True,
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []

    def collect(message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    def failed(response: Response) -> None:
        # The browser asks for /favicon.ico by itself; the pages link none.
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            problems.append(f"{response.status} {response.url}")

    page.on("console", collect)
    page.on("response", failed)
    try:
        yield page, problems
    finally:
        context.close()


def _violations(page: Page) -> str:
    results = Axe().run(page, options=AXE_OPTIONS)
    return results.generate_report() if results.violations_count else ""


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_public_page_with_an_active_incident_has_no_violations(
    live_server: Any, browser: Browser, seeded: SeededPage, color_scheme: str, viewport: Any
) -> None:
    with _open(browser, color_scheme=color_scheme, viewport=viewport) as (page, problems):
        page.goto(f"{live_server.url}{reverse('status_page')}")
        expect(page.get_by_role("heading", name=seeded.active.name)).to_be_visible()
        assert _violations(page) == ""
        assert problems == []
        # Nothing wider than the screen: no sideways scrolling on a phone.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_the_other_public_pages_have_no_violations(
    live_server: Any, browser: Browser, seeded: SeededPage, color_scheme: str
) -> None:
    paths = [
        reverse("status_incident", args=[seeded.active.pk]),
        reverse("status_incident", args=[seeded.past.pk]),
        reverse("status_history"),
        reverse("status_subscribe"),
        reverse("status_maintenance_public", args=[seeded.maintenance.pk]),
    ]
    with _open(browser, color_scheme=color_scheme) as (page, _problems):
        for path in paths:
            page.goto(f"{live_server.url}{path}")
            assert _violations(page) == "", path


def test_the_brand_colour_and_logo_come_from_settings_with_readable_text(
    live_server: Any, browser: Browser, seeded: SeededPage, settings: LazySettings
) -> None:
    settings.STATUS_PAGE_BRAND_COLOR = "#FFD33D"  # light: the band's text turns black
    settings.STATUS_PAGE_HOMEPAGE_URL = "https://www.example.com/"
    settings.STATUS_PAGE_LOGO_URL = "/static/statuspage/test-logo.svg"
    with _open(browser) as (page, _problems):
        response = page.goto(f"{live_server.url}{reverse('status_page')}")
        assert response is not None
        policy = response.headers["content-security-policy"]
        assert "script-src 'none'" in policy and "style-src" not in policy
        header = page.locator(".status-header")
        expect(header).to_have_css("background-color", "rgb(255, 211, 61)")
        expect(header.locator(".status-nav a").first).to_have_css("color", "rgb(0, 0, 0)")
        brand = page.get_by_role("link", name="Backout status")
        expect(brand).to_have_attribute("href", "https://www.example.com/")
        expect(brand.locator("img")).to_have_attribute("alt", "Backout status")

    settings.STATUS_PAGE_BRAND_COLOR = "#123"  # dark: white text
    cache.clear()
    with _open(browser) as (page, _problems):
        page.goto(f"{live_server.url}{reverse('status_page')}")
        header = page.locator(".status-header")
        expect(header).to_have_css("background-color", "rgb(17, 34, 51)")
        expect(header.locator(".status-nav a").first).to_have_css("color", "rgb(255, 255, 255)")


def test_the_skip_link_shows_on_focus_and_leads_to_the_status(
    live_server: Any, browser: Browser, seeded: SeededPage
) -> None:
    with _open(browser, viewport=PHONE) as (page, _problems):
        page.goto(f"{live_server.url}{reverse('status_page')}")
        skip = page.get_by_role("link", name="Skip to the current status")
        assert not skip.is_visible() or skip.bounding_box()["y"] < 0  # type: ignore[index]
        page.keyboard.press("Tab")
        expect(skip).to_be_focused()
        assert skip.bounding_box()["y"] >= 0  # type: ignore[index]
        outline = skip.evaluate("el => getComputedStyle(el).outlineStyle")
        assert outline != "none"
        page.keyboard.press("Enter")
        expect(page.locator("#current-status")).to_be_focused()


def test_the_public_page_keeps_to_its_policy_with_the_brand_stylesheet(
    live_server: Any, browser: Browser, seeded: SeededPage
) -> None:
    context = browser.new_context()  # the policy enforced, as a visitor's browser does
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text)
            if "Content Security Policy" in message.text or "Refused" in message.text
            else None
        ),
    )
    try:
        page.goto(f"{live_server.url}{reverse('status_page')}")
        page.wait_for_load_state("networkidle")
        background = page.locator(".status-header").evaluate(
            "el => getComputedStyle(el).backgroundColor"
        )
        assert background == "rgb(36, 71, 143)"  # the default brand colour, #24478f
    finally:
        context.close()
    assert refused == []
