"""executors.rest keeps the token, and the values a call carries, out of its errors: whatever
form the API's answer repeats them in, wherever the quoted excerpt is cut, and with no error
keeping the unmasked original as its cause or context."""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from devinfra.hosted.server import Answer, Request, Standin, StandinError
from executors.errors import ConfigError
from executors.rest import RestApi, RestError, token_from_env

# Visible ASCII, as a header carries it, with what each JSON encoder escapes its own way.
TOKEN = 'tok/A&b<c>"d\\e+f=9Zq'
SECRET = "postgres://orders:ｐａｓｓ-密码-🔑@db.internal:5432/orders?x=<y>&z='1'"


def go_json(value: str) -> str:
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    return escaped.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def utf16_units(value: str) -> list[int]:
    encoded = value.encode("utf-16-be")
    return [int.from_bytes(encoded[at : at + 2]) for at in range(0, len(encoded), 2)]


# How an API may repeat a value in a body that is not JSON with a message (the client then
# quotes the body itself).
RAW_FORMS = {
    "go-json": go_json,
    "upper-hex": lambda value: "".join(f"\\u{code:04X}" for code in utf16_units(value)),
    "escaped-twice": lambda value: json.dumps(json.dumps(value)[1:-1])[1:-1],
    "html": html.escape,
    "percent": lambda value: urllib.parse.quote(value, safe=""),
}


class Echo(Standin):
    """Refuses what it is sent, repeating it: the token presented, or the body's value."""

    name = "echo"
    routes = [
        ("GET", "/whoami", "whoami"),
        ("POST", "/store", "store"),
        ("POST", "/store-long", "store_long"),
        ("POST", "/store-listed", "store_listed"),
        ("POST", "/store-raw/(?P<form>[a-z-]+)", "store_raw"),
    ]

    def whoami(self, request: Request) -> Any:
        token = request.headers["authorization"].removeprefix("Bearer ")
        raise StandinError(401, f"token {json.dumps(token)} is revoked")

    def store(self, request: Request) -> Any:
        raise StandinError(400, f"value {request.body['value']} is not a URL")

    def store_long(self, request: Request) -> Any:
        # The value where the client's 300-character excerpt of the message ends.
        raise StandinError(400, "x" * 280 + " " + json.dumps(request.body["value"])[1:-1])

    def store_listed(self, request: Request) -> Answer:
        errors = [{"field": "value", "got": request.body["value"], "token": TOKEN}]
        return Answer(422, {"messages": errors})

    def store_raw(self, request: Request) -> Answer:
        shown = RAW_FORMS[request.params["form"]](request.body["value"])
        return Answer(400, f"<p>refused: {shown}</p>".encode(), {"Content-Type": "text/html"})


@pytest.fixture
def echo() -> Iterator[Echo]:
    standin = Echo(token=TOKEN).start()
    yield standin
    standin.stop()


def api_for(standin: Standin) -> RestApi:
    return RestApi("Echo", standin.url, token=TOKEN, timeout=5)


def assert_nothing_secret(error: BaseException) -> None:
    text = str(error)
    for secret in (TOKEN, SECRET, "ｐａｓｓ", "密码", "orders:", "A&b", "A\\u0026b", "e+f=9"):
        assert secret not in text
    assert error.__cause__ is None and error.__context__ is None


def test_a_401_repeating_the_token_has_it_masked(echo: Echo) -> None:
    with pytest.raises(RestError) as raised:
        api_for(echo).get("/whoami")

    assert str(raised.value) == (
        'Echo: GET /whoami: Echo refused the credentials (HTTP 401): token "****" is revoked'
    )
    assert_nothing_secret(raised.value)


def test_a_value_the_call_carries_is_masked_when_the_answer_repeats_it(echo: Echo) -> None:
    with pytest.raises(RestError) as raised:
        api_for(echo).send("POST", "/store", {"value": SECRET}, hidden=[SECRET])

    assert str(raised.value) == "Echo: POST /store: HTTP 400: value **** is not a URL"
    assert_nothing_secret(raised.value)


def test_a_value_where_the_excerpt_ends_is_masked_before_the_cut(echo: Echo) -> None:
    with pytest.raises(RestError) as raised:
        api_for(echo).send("POST", "/store-long", {"value": SECRET}, hidden=[SECRET])

    assert str(raised.value).endswith("x ****")
    assert_nothing_secret(raised.value)
    for size in range(4, len(SECRET)):
        assert json.dumps(SECRET)[1:-1][:size] not in str(raised.value)


def test_listed_errors_are_quoted_as_json_with_values_masked(echo: Echo) -> None:
    with pytest.raises(RestError) as raised:
        api_for(echo).send("POST", "/store-listed", {"value": SECRET}, hidden=[SECRET])

    assert str(raised.value) == (
        'Echo: POST /store-listed: HTTP 422: {"field": "value", "got": "****", "token": "****"}'
    )
    assert_nothing_secret(raised.value)


@pytest.mark.parametrize("form", RAW_FORMS)
def test_a_body_repeating_a_value_in_any_encoding_has_it_masked(echo: Echo, form: str) -> None:
    with pytest.raises(RestError) as raised:
        api_for(echo).send("POST", f"/store-raw/{form}", {"value": SECRET}, hidden=[SECRET])

    # The upper-case escapes of the whole value run past the 300-character excerpt.
    assert str(raised.value).startswith(f"Echo: POST /store-raw/{form}: HTTP 400: <p>refused: ****")
    assert_nothing_secret(raised.value)


@pytest.mark.parametrize("value", [SECRET, "my secret value ｐａｓｓ 12345"], ids=["url", "spaces"])
def test_an_unreachable_api_does_not_show_a_value_sent_in_the_query(echo: Echo, value: str) -> None:
    url = echo.url
    echo.stop()

    with pytest.raises(RestError) as raised:
        RestApi("Echo", url, token=TOKEN, timeout=2).request(
            "GET", "/whoami", params={"q": value}, hidden=[value]
        )

    # requests names the URL, the value percent-encoded in it (spaces as +).
    assert raised.value.retryable and "?q=****" in str(raised.value)
    assert_nothing_secret(raised.value)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"refused: %s"),
        ("text/plain; charset=utf-8", b"refused: %s"),  # a charset the body is not in
        ("application/json", b'{"message": "refused: %s"}'),
        ("application/json; Charset=UTF-8", b'{"message": "refused: %s"}'),
    ],
)
def test_a_body_in_latin_1_repeating_a_value_has_it_masked(
    echo: Echo, monkeypatch: Any, content_type: str, body: bytes
) -> None:
    value = "wörd-secret-pässword"

    def store_raw(request: Request) -> Answer:
        shown = request.body["value"].encode("latin-1")
        return Answer(400, body % shown, {"Content-Type": content_type})

    monkeypatch.setattr(echo, "store_raw", store_raw)

    with pytest.raises(RestError) as raised:
        api_for(echo).send("POST", "/store-raw/html", {"value": value}, hidden=[value])

    assert str(raised.value) == "Echo: POST /store-raw/html: HTTP 400: refused: ****"


def test_an_answer_that_is_not_json_keeps_no_body_as_context(echo: Echo, monkeypatch: Any) -> None:
    def store(request: Request) -> Answer:
        return Answer(200, f"stored {request.body['value']}".encode(), {})

    monkeypatch.setattr(echo, "store", store)

    with pytest.raises(RestError, match="the answer is not JSON") as raised:
        api_for(echo).send("POST", "/store", {"value": SECRET}, hidden=[SECRET])

    assert_nothing_secret(raised.value)


@pytest.mark.parametrize(
    "token", ["tok€n-0123456789", "tök-名前-0123456789", "tok\u202e0123456789"]
)
def test_a_token_a_header_cannot_carry_is_a_config_error_without_it(echo: Echo, token: str) -> None:
    with pytest.raises(ConfigError) as raised:
        RestApi("Echo", echo.url, token=token, timeout=2).get("/whoami")

    assert "the token or the request holds text HTTP cannot carry" in str(raised.value)
    assert token not in str(raised.value) and "0123456789" not in repr(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert echo.calls("GET", "/whoami") == []


@pytest.mark.parametrize(
    "value", ["tok en", "tok\ten", "tök", "tok€", "tok\u200b", "密码", "tok\x7f"]
)
def test_a_token_variable_holding_what_a_token_cannot_is_refused_naming_it(
    monkeypatch: Any, value: str
) -> None:
    monkeypatch.setenv("ECHO_TOKEN", value)

    with pytest.raises(ConfigError) as raised:
        token_from_env("ECHO_TOKEN", "Echo")

    assert str(raised.value) == (
        "Echo: the environment variable ECHO_TOKEN holds a character a token cannot have "
        "(whitespace, a control character or a non-ASCII letter)"
    )


def test_a_token_variable_padded_with_whitespace_is_read_without_it(monkeypatch: Any) -> None:
    monkeypatch.setenv("ECHO_TOKEN", f"  {TOKEN}\n")

    assert token_from_env("ECHO_TOKEN", "Echo") == TOKEN
