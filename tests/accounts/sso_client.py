"""Driving a single sign-on the way a browser does, over HTTP: the console's start, the
stand-in provider's password form, the callback; and reading the flash message it leaves."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from tests.accounts.conftest import IDP_PASSWORD
from tests.asgi import AsgiServer


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def start_sign_in(
    console: AsgiServer, session: requests.Session, next_path: str = "/incidents/"
) -> str:
    """Press "Sign in with SSO": the authorization request the console sends the browser to."""
    started = session.get(
        f"{console.url}/oidc/authenticate/",
        params={"next": next_path},
        allow_redirects=False,
        timeout=15,
    )
    assert started.status_code == 302, started.status_code
    return str(started.headers["Location"])


def sign_in_at_provider(session: requests.Session, authorization_url: str, username: str) -> str:
    """Give the provider a password; the address it sends the browser back to with a code
    (not followed)."""
    form = session.get(authorization_url, timeout=15)
    assert form.status_code == 200 and "/login/" in form.url, (form.status_code, form.url)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    wanted = re.search(r'name="next" value="([^"]*)"', form.text)
    assert token and wanted
    signed_in = session.post(
        form.url,
        data={
            "csrfmiddlewaretoken": token[1],
            "username": username,
            "password": IDP_PASSWORD,
            "next": html.unescape(wanted[1]),
        },
        allow_redirects=False,
        timeout=15,
    )
    assert signed_in.status_code == 302, signed_in.status_code
    # Back to the provider's authorization endpoint, which answers with the code.
    answer = session.get(
        urljoin(form.url, signed_in.headers["Location"]), allow_redirects=False, timeout=15
    )
    assert answer.status_code == 302, answer.status_code
    return str(answer.headers["Location"])


def sso_sign_in(
    console: AsgiServer, username: str, next_path: str = "/incidents/"
) -> tuple[requests.Session, requests.Response]:
    """Press "Sign in with SSO", give the provider a password, follow every redirect."""
    session = requests.Session()
    callback = sign_in_at_provider(session, start_sign_in(console, session, next_path), username)
    return session, session.get(callback, timeout=15)


def flash(response: requests.Response) -> str:
    found = re.search(r'<p class="flash[^"]*">(.*?)</p>', response.text, re.S)
    return html.unescape(found[1]) if found else ""
