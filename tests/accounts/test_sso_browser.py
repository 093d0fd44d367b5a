"""Single sign-on in Chromium, as a commander would: the button on the sign-in page, the
provider's own page, and back in the console with the role the provider's groups give."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.accounts.conftest import IDP_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_commander_signs_in_with_the_sso_button(sso_console, identity_provider, page):
    page.goto(f"{sso_console.url}/incidents/")  # signed out: sent to the sign-in page
    page.get_by_role("link", name="Sign in with SSO").click()

    # The provider's sign-in page, on its own port: the console's own sign-in page is at
    # /accounts/login/, which a pattern such as "**/login/**" would match as well.
    provider_login = f"{identity_provider.server.url}/login/"
    page.wait_for_url(lambda url: url.startswith(provider_login))
    assert urlsplit(page.url).port == identity_provider.server.port != sso_console.port
    (coming_back_to,) = parse_qs(urlsplit(page.url).query)["next"]
    assert coming_back_to.startswith("/openid/authorize")  # the provider's authorization step
    assert page.get_by_role("heading", name="Example Corp identity provider").is_visible()
    page.get_by_label("Corporate user name").fill("alice")
    page.get_by_label("Corporate password").fill(IDP_PASSWORD)
    page.get_by_role("button", name="Sign in to Example Corp").click()

    page.wait_for_url(f"{sso_console.url}/incidents/")
    assert page.get_by_text("alice").first.is_visible()
    page.goto(f"{sso_console.url}/incidents/new")
    assert page.get_by_role("button", name="Open incident").is_visible()  # a commander's page
