"""Masking the password in URLs (postgres://app:PASSWORD@db/orders) wherever text leaves the
engine: step logs, check results, the timeline, exports and the debug page.

A password may hold `/`, `@` or `:` written raw; it runs to the last `@` that is followed by a
plain host (no further `@` before the path, query or end). A scheme is only recognised where
it starts (not after a letter, digit or `+.-`), and a password is at most 256 characters, so
masking a long line stays linear in its length.
"""

from __future__ import annotations

import re

MASK = "****"

_URL_CREDENTIALS = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<head>[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s:/@]*)"
    r":\S{1,256}?@(?=[^\s/@?#]*(?:[\s/?#]|$))"
)


def mask_url_credentials(text: str, substitute: str = MASK) -> str:
    return _URL_CREDENTIALS.sub(lambda match: f"{match['head']}:{substitute}@", text)
