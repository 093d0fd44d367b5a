"""Status text is Markdown. What the public sees is rendered by markdown-it-py with raw HTML
turned off and then cleaned by nh3 (the Ammonia sanitiser) against a short allow-list, so no
script, event-handler attribute or non-http(s)/mailto link can reach a reader.

`clean_source` also strips raw HTML (even entity-encoded) and script-like link schemes from
the Markdown itself: the JSON API and the Atom feed carry that text, and their clients may
render it in ways this console does not control.
"""

from __future__ import annotations

import html
import re

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote",
        "ul", "ol", "li", "a", "h3", "h4", "h5", "h6",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.enable("strikethrough")
# Headings inside an update must not outrank the page's own headings.
_markdown.disable("heading")

# `javascript:`, `vbscript:` (with any spacing or control characters between the letters,
# which browsers ignore) and `data:<type>/` outside of a link are as dangerous to a client that
# linkifies text as inside one.
_SCRIPT_SCHEME = re.compile(
    r"(?i)(?:j[\s\x00-\x1f]*a[\s\x00-\x1f]*v[\s\x00-\x1f]*a|v[\s\x00-\x1f]*b|l[\s\x00-\x1f]*i"
    r"[\s\x00-\x1f]*v[\s\x00-\x1f]*e)[\s\x00-\x1f]*s[\s\x00-\x1f]*c[\s\x00-\x1f]*r[\s\x00-\x1f]*"
    r"i[\s\x00-\x1f]*p[\s\x00-\x1f]*t[\s\x00-\x1f]*:"
    r"|\bdata[\s\x00-\x1f]*:[\s\x00-\x1f]*[a-z]+/"
)
BLOCKED = "[blocked link]"
MAX_CLEAN_PASSES = 5


def clean_source(text: str) -> str:
    """The Markdown with raw HTML removed and script-like schemes blocked.

    Entities are decoded and cleaned again until nothing changes, so `&lt;script&gt;` cannot
    come back as a tag in a client that decodes entities once more.
    """
    current = text.replace("\r\n", "\n")
    for _ in range(MAX_CLEAN_PASSES):
        stripped = html.unescape(
            nh3.clean(current, tags=set(), clean_content_tags={"script", "style"})
        )
        stripped = _SCRIPT_SCHEME.sub(BLOCKED, stripped)
        if stripped == current:
            break
        current = stripped
    else:
        # Pathologically nested encodings: give up on the text rather than risk it.
        current = html.escape(current)
    return current.strip()


def render(markdown_text: str) -> str:
    """Sanitised HTML for a Markdown status text."""
    rendered = _markdown.render(clean_source(markdown_text))
    return nh3.clean(
        rendered,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )
