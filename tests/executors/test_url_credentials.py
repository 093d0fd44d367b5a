"""Masking URL passwords: passwords holding `/`, `@` and `:`, several URLs on a line, text
that only looks like a URL, and long lines."""

from __future__ import annotations

import pytest

from executors.url_credentials import mask_url_credentials


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("postgres://app:s3cr3t@db/orders", "postgres://app:****@db/orders"),
        ("postgres://app:pa/ss@wo@rd@db:5432/orders", "postgres://app:****@db:5432/orders"),
        ("redis://:pw:with:colons@127.0.0.1:6379/0", "redis://:****@127.0.0.1:6379/0"),
        ("https://u:p@h?x=1", "https://u:****@h?x=1"),
        ("DATABASE_URL=mysql://u:密码🔑@db/x", "DATABASE_URL=mysql://u:****@db/x"),
        (
            "from postgres://a:one@h1/db to postgres://b:two/2@h2/db",
            "from postgres://a:****@h1/db to postgres://b:****@h2/db",
        ),
        ("jdbc:postgresql://u:p@ss@h/db", "jdbc:postgresql://u:****@h/db"),
    ],
)
def test_the_password_goes_and_the_rest_stays(line, masked):
    assert mask_url_credentials(line) == masked


@pytest.mark.parametrize(
    "line",
    ["see http://host:8080/path ok", "mailto:me@example.com", "user@host:22", "a://b c@d"],
)
def test_text_without_a_password_is_left_alone(line):
    assert mask_url_credentials(line) == line


def test_long_lines_without_a_password_come_back_whole():
    # Each took seconds to minutes when every position could start a scheme; now a blink.
    for line in ["x" * 200_000, "a://b:" + "y" * 200_000, "a://b:" * 40_000]:
        assert mask_url_credentials(line) == line
