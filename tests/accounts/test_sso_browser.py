"""Single sign-on in Chromium, as a commander would: the button on the sign-in page, the
provider's own page, and back in the console with the role the provider's groups give."""

from __future__ import annotations

import pytest

from tests.accounts.conftest import IDP_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_commander_signs_in_with_the_sso_button(sso_console, page):
    page.goto(f"{sso_console.url}/incidents/")  # signed out: sent to the sign-in page
    page.get_by_role("link", name="Sign in with SSO").click()

    page.wait_for_url("**/login/**")  # the provider's page, on its own port
    assert "Example Corp" in page.title()
    page.get_by_label("Corporate user name").fill("alice")
    page.get_by_label("Corporate password").fill(IDP_PASSWORD)
    page.get_by_role("button", name="Sign in to Example Corp").click()

    page.wait_for_url(f"{sso_console.url}/incidents/")
    assert page.get_by_text("alice").first.is_visible()
    page.goto(f"{sso_console.url}/incidents/new")
    assert page.get_by_role("button", name="Open incident").is_visible()  # a commander's page
