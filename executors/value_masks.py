"""Masking secret values in what an API sends back (an error's explanation) before a backend
passes it on to the step's log, its failure reason or the timeline.

An API that repeats a value it refused may show it as sent, JSON-escaped (quotes and
backslashes escaped, newlines as `\\n`, non-ASCII as `\\uXXXX`, perhaps `/` as `\\/`), or
inside an excerpt that executors.rest made one line of at most 300 characters: whitespace
runs collapsed to one space, and the value perhaps cut short where the excerpt ends. Every
such form is masked, the longest first (a value holding another is masked whole), and so is
the start of a value where the text ends. By default, forms shorter than MIN_MASKED
characters are left alone, since masking every "ab" of a message hides the message rather than
protects anything; a caller that would rather garble the message passes `shortest=1`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from executors.url_credentials import MASK

MIN_MASKED = 4


def value_forms(value: str, *, shortest: int = MIN_MASKED) -> set[str]:
    """The forms in which `value` may come back in an API's answer (see the module), of at
    least `shortest` characters."""
    escaped = json.dumps(value)[1:-1]
    forms = {value, escaped, json.dumps(value, ensure_ascii=False)[1:-1]}
    forms.add(escaped.replace("/", "\\/"))
    forms |= {" ".join(form.split()) for form in forms}
    return {form for form in forms if len(form) >= max(1, shortest)}


def mask_values(text: str, values: Iterable[str], *, shortest: int = MIN_MASKED) -> str:
    """`text` with every form of each of `values` (of at least `shortest` characters)
    replaced by ****, and a value's start (at least MIN_MASKED characters of a form) where
    `text` ends."""
    forms = sorted(
        {form for value in values for form in value_forms(value, shortest=shortest)},
        key=len,
        reverse=True,
    )
    for form in forms:
        text = text.replace(form, MASK)
    cut = max(
        (
            size
            for form in forms
            for size in range(MIN_MASKED, min(len(form), len(text)) + 1)
            if text.endswith(form[:size])
        ),
        default=0,
    )
    return text[: len(text) - cut] + MASK if cut else text
