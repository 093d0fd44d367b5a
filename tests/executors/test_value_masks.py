"""executors.value_masks: a secret value in an API's answer is masked in every form the
answer may show it in (each JSON dialect's escapes, Python's repr, escaped twice, HTML
entities, percent-encoded, UTF-8 read as Latin-1, on one line), cut text never shows part
of one, and a message is not garbled by masking short values."""

from __future__ import annotations

import html
import json
import urllib.parse

import pytest

from executors import value_masks
from executors.value_masks import MIN_MASKED, mask_values

PEM = '-----BEGIN KEY-----\nMIIBVQ "quoted" \\ 密码/שלום 🔑\n-----END KEY-----'
URL = "postgres://orders:pa\"ss/wörd&x<y>@db.internal:5432/orders?ssl='on'"


def go_json(value: str) -> str:
    """As Go's encoding/json writes a string: raw UTF-8, but <, > and & as \\u escapes."""
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    return escaped.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def upper_hex(value: str) -> str:
    """Every character but ASCII letters and digits as \\uXXXX in upper-case hex (a pair of
    them for a character beyond the BMP)."""
    units = value.encode("utf-16-be")
    return "".join(
        char if char.isascii() and char.isalnum() else f"\\u{code:04X}"
        for char, code in zip(
            (chr(int.from_bytes(units[i : i + 2])) for i in range(0, len(units), 2)),
            (int.from_bytes(units[i : i + 2]) for i in range(0, len(units), 2)),
            strict=True,
        )
    )


FORMS = {
    "raw": lambda value: value,
    "json-ascii": lambda value: json.dumps(value)[1:-1],
    "json-unicode": lambda value: json.dumps(value, ensure_ascii=False)[1:-1],
    "json-slashes": lambda value: json.dumps(value)[1:-1].replace("/", "\\/"),
    "go-json": go_json,
    "upper-hex": upper_hex,
    "escaped-twice": lambda value: json.dumps(json.dumps(value)[1:-1])[1:-1],
    "escaped-thrice": lambda value: json.dumps(json.dumps(json.dumps(value)[1:-1])[1:-1])[1:-1],
    "python-repr": lambda value: repr(value)[1:-1],
    "python-ascii": lambda value: ascii(value)[1:-1],
    "repr-in-a-dict": lambda value: str({"DATABASE_URL": value}),
    "html": html.escape,
    "html-numeric": lambda value: "".join(f"&#{ord(char)};" for char in value),
    "percent": lambda value: urllib.parse.quote(value, safe=""),
    "utf8-read-as-latin1": lambda value: value.encode().decode("latin-1"),
    "one-line": lambda value: " ".join(value.split()),
    "json-one-line": lambda value: " ".join(json.dumps(value)[1:-1].split()),
}


@pytest.mark.parametrize("value", [PEM, URL], ids=["pem", "url"])
@pytest.mark.parametrize("form", FORMS)
def test_each_form_an_answer_may_repeat_a_value_in_is_masked(value, form):
    shown = FORMS[form](value)
    assert shown != "" and f"bad {shown} here" != "bad **** here"

    masked = mask_values(f"Invalid value {shown} for DATABASE_URL", [value])

    assert masked.startswith("Invalid value ") and masked.endswith(" for DATABASE_URL")
    assert "****" in masked
    for secret in ("MIIBVQ", "密码", "wörd", "w\\u00f6rd", "w\\u00F6rd", "pa%22ss", "orders:pa"):
        assert secret not in masked


def test_what_surrounds_a_masked_value_is_kept_as_it_was():
    text = 'HTTP 400: {"value": "' + go_json(URL) + '", "field": "DATABASE_URL"}'

    assert mask_values(text, [URL]) == 'HTTP 400: {"value": "****", "field": "DATABASE_URL"}'


@pytest.mark.parametrize("value", [PEM, URL], ids=["pem", "url"])
@pytest.mark.parametrize("form", ["raw", "json-ascii", "escaped-twice", "percent"])
def test_text_cut_after_masking_never_shows_part_of_a_value(value, form):
    text = "x" * 280 + " " + FORMS[form](value) + " and more after it"

    masked = mask_values(text, [value], limit=300)

    assert masked == "x" * 280 + " ****"
    for size in range(MIN_MASKED, len(value)):
        assert value[:size] not in masked


def test_a_cut_counts_the_texts_own_characters_before_masking():
    text = "token abcdef-123456 then " + "y" * 400

    assert mask_values(text, ["abcdef-123456"], limit=40) == "token **** then " + "y" * 15


def test_overlapping_and_nested_values_are_masked_as_one():
    assert mask_values("got secret-and-more", ["secret", "secret-and-more"]) == "got ****"
    assert mask_values("got abcdefgh", ["abcdef", "cdefgh"]) == "got ****"


def test_a_value_that_is_not_there_leaves_the_text_as_it_was():
    text = "Doppler: update orders/prd: HTTP 503: try again later"

    assert mask_values(text, [PEM, URL]) == text
    assert mask_values(text, []) == text


def test_a_value_ending_where_the_text_ends_is_not_taken_for_a_cut_one():
    # Only a cut of what is read hides a value's start: text that ends with a few of a
    # value's first characters, and was read whole, is left as it is.
    assert mask_values("retry later", ["later-on-secret"]) == "retry later"
    assert mask_values("retry later", ["later-on-secret"], limit=300) == "retry later"


def test_short_values_are_masked_only_as_whole_words_and_not_below_shortest():
    text = "HTTP 400: bad request for abc (abcd, xabc, abc1)"

    assert mask_values(text, ["abc", "  ", ""]) == text
    assert mask_values(text, ["abc"], shortest=1) == (
        "HTTP 400: bad request for **** (abcd, xabc, abc1)"
    )
    assert mask_values('value "\\u0031" refused', ["1"], shortest=1) == 'value "****" refused'
    assert mask_values("HTTP 401", ["1"], shortest=1) == "HTTP 401"


@pytest.mark.parametrize(
    "value",
    [
        "密码-パスワード-비밀번호",
        "🔑🔐🗝️-key",
        "كلمة-السر-סיסמה",
        "a\u202eb-override",
        "x\x00y\x1bz-ctl",
    ],
    ids=["cjk", "emoji", "right-to-left", "bidi-control", "control"],
)
def test_non_latin_and_control_values_are_masked_in_their_escaped_forms(value):
    for form in ("raw", "json-ascii", "upper-hex", "python-ascii", "percent", "escaped-twice"):
        masked = mask_values(f"refused {FORMS[form](value)}.", [value])

        assert masked == "refused ****.", form


def test_a_value_with_a_lone_surrogate_is_masked_without_an_error():
    value = "ab\ud800cd-secret"

    assert mask_values(f"bad {json.dumps(value)}", [value]) == 'bad "****"'


def test_a_long_text_is_read_only_as_far_as_a_cut_needs(monkeypatch):
    read: list[int] = []
    original = value_masks.readings
    monkeypatch.setattr(
        value_masks, "readings", lambda text: read.append(len(text)) or original(text)
    )
    text = "z" * 5_000_000 + URL

    assert mask_values(text, [URL], limit=300) == "z" * 300
    # The longest form searched is the URL's UTF-8 read as Latin-1: one character a byte.
    assert read == [300 + value_masks.READ_AHEAD * len(URL.encode())]


@pytest.mark.parametrize("value", [PEM, "🔑" * 60, URL], ids=["pem", "emoji", "url"])
@pytest.mark.parametrize("form", ["json-ascii", "escaped-twice", "escaped-thrice", "html-numeric"])
def test_a_value_whose_encoding_runs_past_what_is_read_is_masked_from_its_start(value, form):
    shown = FORMS[form](value)
    for before in range(240, 300, 7):
        text = "x" * before + " " + shown + " and more"

        masked = mask_values(text, [value], limit=300)

        assert masked == "x" * before + " ****", (before, masked[-40:])


def test_whitespace_running_past_what_is_read_does_not_leave_a_value_shown():
    value = "sk_live_ABCDEFGHIJ" + " " * 2000 + "tail"

    assert mask_values("x" * 10 + value + " more", [value], limit=300) == "x" * 10 + "****"


@pytest.mark.parametrize(
    ("text", "value", "masked"),
    [
        ("%C3%41", "abcd", "%C3%41"),  # not UTF-8, and ends the text
        ("got %C3%41BCDEFGH end", "ABCDEFGH", "got %C3**** end"),  # %C3 is not the value's
        ("bad path /caf%E9%21 here", "café!", "bad path /**** here"),
        ("bad w%F6rd-secret-value", "wörd-secret-value", "bad ****"),  # Latin-1 escapes
        ("/x?q=my+secret+value+12345&y=1", "my secret value 12345", "/x?q=****&y=1"),
        ("/x?q=a%2Bb%20c+d", "a+b c d", "/x?q=****"),
    ],
)
def test_percent_escapes_are_read_as_utf_8_or_latin_1_with_plus_for_space(text, value, masked):
    assert mask_values(text, [value]) == masked
    assert mask_values("a" * 358 + text, [value], limit=300) == "a" * 300


def test_a_limit_below_zero_is_taken_for_none_shown():
    text = "token=SECRETVALUE and more " * 3

    assert mask_values(text, ["SECRETVALUE"], limit=-5) == ""
    assert mask_values(text, ["SECRETVALUE"], limit=0) == ""
