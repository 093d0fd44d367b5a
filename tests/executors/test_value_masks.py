"""executors.value_masks: a secret value in an API's answer is masked in every form the
answer may show it in, and a message is not garbled by masking short values."""

from __future__ import annotations

import json

import pytest

from executors.value_masks import MIN_MASKED, mask_values, value_forms

PEM = '-----BEGIN KEY-----\nMIIBVQ "quoted" \\ 密码/שלום 🔑\n-----END KEY-----'
EXCERPT = 300  # executors.rest shortens an answer it quotes to this many characters
URL = 'postgres://orders:pa"ss/wörd@db.internal:5432/orders'


@pytest.mark.parametrize("value", [PEM, URL])
@pytest.mark.parametrize(
    "shown",
    [
        lambda value: value,
        lambda value: json.dumps(value)[1:-1],
        lambda value: json.dumps(value, ensure_ascii=False)[1:-1],
        lambda value: json.dumps(value)[1:-1].replace("/", "\\/"),
        lambda value: " ".join(value.split()),
        lambda value: " ".join(json.dumps(value)[1:-1].split()),
    ],
    ids=["raw", "json-ascii", "json-unicode", "json-slashes", "one-line", "json-one-line"],
)
def test_each_form_an_answer_may_repeat_a_value_in_is_masked(value, shown):
    text = f"Invalid value {shown(value)} for DATABASE_URL"

    assert mask_values(text, [value]) == "Invalid value **** for DATABASE_URL"


@pytest.mark.parametrize("value", [PEM, URL])
def test_a_value_cut_short_where_an_excerpt_ends_is_masked(value):
    text = ("x" * (EXCERPT - 20) + " " + json.dumps(value)[1:-1])[:EXCERPT]

    masked = mask_values(text, [value])

    assert masked == "x" * (EXCERPT - 20) + " ****"
    for size in range(MIN_MASKED, len(value)):
        assert value[:size] not in masked


def test_the_longest_value_is_masked_whole_before_one_it_holds():
    assert mask_values("got secret-and-more", ["secret", "secret-and-more"]) == "got ****"


def test_short_values_are_left_alone_unless_asked_for():
    text = "HTTP 400: bad request for abc"

    assert mask_values(text, ["abc", "  ", ""]) == text
    assert mask_values(text, ["abc"], shortest=1) == "HTTP 400: bad request for ****"
    assert value_forms("") == set() and value_forms("", shortest=0) == set()


def test_a_message_without_the_value_is_unchanged():
    text = "Doppler: update orders/prd: HTTP 503: try again later"

    assert mask_values(text, [PEM, URL]) == text
