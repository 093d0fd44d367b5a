"""The hosted-API client (executors.rest) against a stand-in built on devinfra.hosted.server:
what each kind of answer becomes, pagination, and the token kept out of every message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devinfra.hosted.server import Answer, Request, Standin, StandinError
from executors.errors import BackendError, ConfigError, parse_retry_after
from executors.rest import NotFound, RestApi, RestError, link_next, token_from_env

TOKEN = "tok_secret_0123456789"


class Shelf(Standin):
    """A small API: items with Link-header pages, one that echoes, one that fails."""

    name = "shelf"
    routes = [
        ("GET", "/items", "items"),
        ("POST", "/echo", "echo"),
        ("GET", "/broken/(?P<code>[0-9]+)", "broken"),
        ("GET", "/text", "text"),
        ("GET", "/long", "long"),
    ]

    def items(self, request: Request) -> Answer:
        page = int(request.arg("page") or 1)
        headers = {}
        if page < 3:
            headers["Link"] = f'<{self.url}/items?page={page + 1}>; rel="next"'
        return Answer(200, [f"item-{page}-a", f"item-{page}-b"], headers)

    def echo(self, request: Request) -> Any:
        return {"got": request.body}

    def broken(self, request: Request) -> Any:
        raise StandinError(int(request.params["code"]), f"it broke with {TOKEN} inside")

    def long(self, request: Request) -> Any:
        # The token where the client's 300-character excerpt of the message ends.
        raise StandinError(400, "x" * 290 + " " + TOKEN)

    def text(self, request: Request) -> Answer:
        return Answer(200, b"<html>not json</html>", {"Content-Type": "text/html"})


@pytest.fixture
def shelf() -> Iterator[Shelf]:
    standin = Shelf(token=TOKEN).start()
    yield standin
    standin.stop()


def api_for(standin: Standin, **kwargs: Any) -> RestApi:
    return RestApi("Shelf", standin.url, token=TOKEN, **kwargs)


def test_a_call_carries_the_token_and_gets_the_json_back(shelf: Shelf) -> None:
    assert api_for(shelf).send("POST", "/echo", {"name": "名前 🚀"}) == {"got": {"name": "名前 🚀"}}
    assert shelf.calls("POST", "/echo")[0].body == {"name": "名前 🚀"}
    # The stand-in keeps no token in what it records.
    assert "authorization" not in shelf.calls("POST", "/echo")[0].headers


def test_a_wrong_token_is_a_permanent_failure_naming_the_service(shelf: Shelf) -> None:
    api = RestApi("Shelf", shelf.url, token="tok_wrong_token_value")
    with pytest.raises(RestError) as raised:
        api.get("/items", doing="list items")
    assert not raised.value.retryable
    assert "Shelf refused the credentials (HTTP 401)" in str(raised.value)
    assert "tok_wrong_token_value" not in str(raised.value)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_throttling_and_server_errors_are_retryable_with_the_wait_asked(
    shelf: Shelf, status: int
) -> None:
    shelf.fail_next(status, retry_after="7")
    with pytest.raises(RestError) as raised:
        api_for(shelf).get("/items")
    assert raised.value.retryable
    assert raised.value.status == status
    assert raised.value.retry_after == 7.0  # type: ignore[attr-defined]
    assert api_for(shelf).get("/items") == ["item-1-a", "item-1-b"]  # the fault was used up


def test_a_rate_limit_reset_instant_counts_as_the_wait(shelf: Shelf, monkeypatch: Any) -> None:
    monkeypatch.setattr("executors.rest.time.time", lambda: 1_000.0)

    class Limited(Shelf):
        def items(self, request: Request) -> Answer:
            headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1042"}
            return Answer(403, {"message": "API rate limit exceeded"}, headers)

    limited = Limited(token=TOKEN).start()
    try:
        with pytest.raises(RestError) as raised:
            api_for(limited).get("/items")
    finally:
        limited.stop()
    assert raised.value.retryable and raised.value.retry_after == 42.0  # type: ignore[attr-defined]
    assert "API rate limit exceeded" in str(raised.value)


def test_a_missing_thing_is_not_found_and_other_4xx_keep_the_apis_message(shelf: Shelf) -> None:
    with pytest.raises(NotFound):
        api_for(shelf).get("/broken/404")
    with pytest.raises(RestError) as raised:
        api_for(shelf).get("/broken/422", doing="check the widget")
    assert not raised.value.retryable
    assert str(raised.value) == "Shelf: check the widget: HTTP 422: it broke with **** inside"


def test_a_token_cut_short_where_the_quoted_message_ends_is_masked(shelf: Shelf) -> None:
    with pytest.raises(RestError) as raised:
        api_for(shelf).get("/long")

    assert str(raised.value).endswith("x " + "****")
    assert "tok" not in str(raised.value)


def test_no_answer_in_time_is_retryable_and_names_the_timeout(shelf: Shelf) -> None:
    shelf.delay_next(1.0)
    with pytest.raises(RestError) as raised:
        api_for(shelf, timeout=0.2).get("/items")
    assert raised.value.retryable and raised.value.status is None
    assert "no answer within 0.2 s" in str(raised.value)


def test_a_refused_connection_is_retryable(shelf: Shelf) -> None:
    url = shelf.url
    shelf.stop()
    with pytest.raises(RestError) as raised:
        RestApi("Shelf", url, token=TOKEN).get("/items")
    assert raised.value.retryable
    assert TOKEN not in str(raised.value)


def test_an_answer_that_is_not_json_is_a_permanent_failure(shelf: Shelf) -> None:
    with pytest.raises(RestError) as raised:
        api_for(shelf).get("/text")
    assert not raised.value.retryable and "not JSON" in str(raised.value)


def test_pages_follow_link_headers_and_stop_at_a_limit(shelf: Shelf) -> None:
    pages = api_for(shelf).pages("/items", items=list, next_page=link_next)
    assert list(pages) == [f"item-{page}-{side}" for page in (1, 2, 3) for side in "ab"]
    with pytest.raises(RestError, match="more than 2 pages"):
        list(api_for(shelf).pages("/items", items=list, next_page=link_next, limit=2))


def test_unknown_paths_and_methods_answer_as_an_api_does(shelf: Shelf) -> None:
    with pytest.raises(NotFound):
        api_for(shelf).get("/nothing-here")
    with pytest.raises(RestError) as raised:
        api_for(shelf).send("DELETE", "/items")
    assert raised.value.status == 405


def test_a_metadata_address_is_never_asked() -> None:
    with pytest.raises(ConfigError, match="link-local"):
        RestApi("Shelf", "http://169.254.169.254", token=TOKEN, timeout=1).get("/latest")


def test_the_token_comes_from_the_environment_named(monkeypatch: Any) -> None:
    monkeypatch.setenv("SHELF_TOKEN", TOKEN)
    assert token_from_env("SHELF_TOKEN", "Shelf") == TOKEN
    monkeypatch.delenv("SHELF_TOKEN")
    with pytest.raises(ConfigError, match="SHELF_TOKEN is not set"):
        token_from_env("SHELF_TOKEN", "Shelf")
    with pytest.raises(ConfigError, match="names no token_env"):
        token_from_env("", "Shelf")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("12", 12.0), ("0", 0.0), ("-3", 0.0), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_reads_seconds_and_ignores_nonsense(header: Any, seconds: Any) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_reads_an_http_date_in_the_past_as_no_wait() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_errors_are_backend_errors_the_engine_understands() -> None:
    assert issubclass(RestError, BackendError) and issubclass(NotFound, BackendError)


def test_a_next_page_on_another_host_is_not_followed_with_the_token(shelf: Shelf) -> None:
    def elsewhere(response: Any, data: Any) -> str:
        return "http://203.0.113.9/items?page=2"

    with pytest.raises(RestError, match="the next page is elsewhere") as raised:
        list(api_for(shelf).pages("/items", items=list, next_page=elsewhere))
    assert not raised.value.retryable
    assert len(shelf.calls("GET", "/items")) == 1


@pytest.mark.parametrize(("header", "seconds"), [("inf", None), ("nan", None), ("86400", 3600.0)])
def test_retry_after_is_finite_and_capped(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds
