"""Known XSS payloads through the Markdown renderer and sanitiser."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from statuspage.markup import clean_source, render

# Script tags, event handlers, script-like and data: links, SVG, and encoded variants.
XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<img src=x oNeRrOr=alert(1)//",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<body onload=alert(1)>",
    "<iframe src=javascript:alert(1)></iframe>",
    '<a href="javascript:alert(1)">click</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](&#x6A;&#x61;vascript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    '![x](x" onerror="alert(1))',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&amp;lt;img src=x onerror=alert(1)&amp;gt;",
    "%3Cscript%3Ealert(1)%3C/script%3E",
    "<a href='&#x6A;avascript:alert(1)'>x</a>",
    "<details open ontoggle=alert(1)>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<<script>script>alert(1)<</script>/script>",
    "\x3cscript\x3ealert(1)\x3c/script\x3e",
]


class _Elements(HTMLParser):
    """Every element and attribute a browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend((name, value or "") for name, value in attrs)


def assert_inert(html: str) -> None:
    """No script-capable element, no event handler, no script-like URL in `html`."""
    parser = _Elements()
    parser.feed(html)
    assert not {"script", "svg", "iframe", "img", "math", "body", "details", "style"} & set(
        parser.tags
    ), html
    for name, value in parser.attributes:
        assert not name.startswith("on"), html
        assert name != "style", html
        if name in ("href", "src"):
            squeezed = "".join(value.split()).lower()
            assert squeezed.startswith(("http:", "https:", "mailto:")), html


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_rendered_payload_is_inert(payload):
    assert_inert(render(f"Update. {payload} More text."))


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_published_source_is_inert_even_when_a_client_renders_it_as_html(payload):
    assert_inert(clean_source(payload))
    assert "javascript:" not in "".join(clean_source(payload).split()).lower()


def test_markdown_formatting_and_safe_links_survive():
    html = render("**Checkout** is _slow_.\n\n- one\n- two\n\n[details](https://example.com/x)")
    assert "<strong>Checkout</strong>" in html
    assert "<em>slow</em>" in html
    assert "<li>one</li>" in html
    assert '<a href="https://example.com/x" rel="nofollow noopener noreferrer">details</a>' in html


def test_plain_text_with_angle_brackets_and_ampersands_is_kept():
    assert clean_source("error rate < 5% & falling") == "error rate < 5% & falling"
    assert "error rate &lt; 5% &amp; falling" in render("error rate < 5% & falling")
