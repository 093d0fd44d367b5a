"""Masking secret values in what an API sends back (an error's explanation) before a backend
passes it on to the step's log, its failure reason or the timeline.

An API that repeats a value it refused may show it as sent or encoded: escaped as JSON does
it in any dialect (`\\u00e9` or `\\u00E9`, Go's `\\u0026` for `&`, `\\/` for `/`, a
surrogate pair for an emoji), as Python's repr does it (`\\'`, `\\xe9`), escaped twice (a
JSON document quoted inside another), as HTML entities, percent-encoded, or with its
whitespace collapsed (executors.rest quotes an answer on one line). Rather than list every
form a value may take, the text is decoded: every way of reading it (as it is, with one or
two levels of escapes undone, entities or percent-encoding undone, whitespace runs as one
space) is searched for each value, and what matches is masked in the text as it was.

A value of fewer than MIN_MASKED characters is masked only where it stands as a whole word
(not next to a letter or digit), since masking every "ab" of a message hides the message
rather than protects anything; below `shortest` it is left alone.

Mask before cutting: a caller that shortens the text passes `limit`, and the text is cut
after masking, in the text's own positions, so a value is never left half-shown where the
cut falls.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from executors.url_credentials import MASK

MIN_MASKED = 4
# How many characters of text one character of a value may take at most once encoded (an
# emoji as a surrogate pair escaped twice is 14); text this far past `limit` is not read.
_WIDEST = 16
# How many decodings are stacked at most (an escaped JSON document inside another).
_DEPTH = 2
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|x([0-9a-fA-F]{2})|(.))", re.S)
_SHORT_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_PERCENT = re.compile(r"(?:%[0-9a-fA-F]{2})+")


class Unit(NamedTuple):
    """One character of a reading of the text, and the span of the text it was read from."""

    char: str
    start: int
    end: int


type Reading = list[Unit]
type Decoded = list[tuple[str, int, int]] | None


def _merged(units: Sequence[Unit], first: int, last: int, char: str) -> Unit:
    return Unit(char, units[first].start, units[last - 1].end)


def _replacing(
    units: Reading, pattern: re.Pattern[str], decode: Callable[[re.Match[str]], Decoded]
) -> Reading:
    """`units` with each match of `pattern` read as the characters `decode(match)` gives
    (None: left as it is); several characters from one match share its span."""
    joined = "".join(unit.char for unit in units)
    read: Reading = []
    done = 0
    for found in pattern.finditer(joined):
        decoded = decode(found)
        if decoded is None:
            continue
        read.extend(units[done : found.start()])
        for char, first, last in decoded:
            read.append(_merged(units, found.start() + first, found.start() + last, char))
        done = found.end()
    read.extend(units[done:])
    return read


def _unescaped(found: re.Match[str]) -> Decoded:
    code = found.group(1) or found.group(2) or found.group(3)
    if code is not None:
        number = int(code, 16)
        if number > 0x10FFFF:
            return None
        return [(chr(number), 0, len(found.group()))]
    letter = found.group(4)
    return [(_SHORT_ESCAPES.get(letter, letter), 0, 2)]


def _entities(found: re.Match[str]) -> Decoded:
    text = html.unescape(found.group())
    if text == found.group():
        return None
    return [(char, 0, len(found.group())) for char in text]


def _percent(found: re.Match[str]) -> Decoded:
    """A run of %XX read as UTF-8: each character spans the bytes it was made of."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    read: list[tuple[str, int, int]] = []
    first = 0
    for index in range(0, len(found.group()), 3):
        for char in decoder.decode(bytes([int(found.group()[index + 1 : index + 3], 16)])):
            read.append((char, first, index + 3))
            first = index + 3
    read.extend((char, first, len(found.group())) for char in decoder.decode(b"", final=True))
    return read


def _paired(units: Reading) -> Reading:
    """Surrogate pairs (JSON's way of escaping an emoji) read as the one character."""
    read: Reading = []
    for unit in units:
        previous = read[-1].char if read else ""
        if "\udc00" <= unit.char <= "\udfff" and "\ud800" <= previous <= "\udbff":
            pair = (previous + unit.char).encode("utf-16", "surrogatepass").decode("utf-16")
            read[-1] = Unit(pair, read[-1].start, unit.end)
        else:
            read.append(unit)
    return read


def _one_line(units: Reading) -> Reading:
    """Each run of whitespace read as one space."""
    read: Reading = []
    for unit in units:
        if unit.char.isspace():
            if read and read[-1].char == " ":
                read[-1] = Unit(" ", read[-1].start, unit.end)
                continue
            unit = Unit(" ", unit.start, unit.end)
        read.append(unit)
    return read


def _decodings(units: Reading) -> Iterator[Reading]:
    yield _paired(_replacing(units, _ESCAPE, _unescaped))
    yield _replacing(units, _ENTITY, _entities)
    yield _replacing(units, _PERCENT, _percent)


def readings(text: str) -> list[Reading]:
    """Every way of reading `text` that masking searches (see the module), whitespace runs
    read as one space."""
    raw: Reading = [Unit(char, index, index + 1) for index, char in enumerate(text)]
    found = {text: _one_line(raw)}
    layer = [raw]
    for _ in range(_DEPTH):
        following = []
        for units in layer:
            for decoded in _decodings(units):
                joined = "".join(unit.char for unit in decoded)
                if joined not in found:
                    found[joined] = _one_line(decoded)
                    following.append(decoded)
        layer = following
    return list(found.values())


def _spans(units: Reading, value: str, *, whole_word: bool) -> Iterator[tuple[int, int]]:
    joined = "".join(unit.char for unit in units)
    start = joined.find(value)
    while start >= 0:
        end = start + len(value)
        alone = not (
            (start > 0 and joined[start - 1].isalnum())
            or (end < len(joined) and joined[end].isalnum())
        )
        if alone or not whole_word:
            yield units[start].start, units[end - 1].end
        start = joined.find(value, start + 1)


def _as_latin1(value: str) -> str:
    """`value` as text that took its UTF-8 bytes for Latin-1 shows it (requests does so for a
    text body that names no charset)."""
    return value.encode("utf-8", "surrogatepass").decode("latin-1")


def mask_values(
    text: str, values: Iterable[str], *, shortest: int = MIN_MASKED, limit: int | None = None
) -> str:
    """`text` with each of `values`, in every form it may be shown in, replaced by ****;
    cut after masking to the first `limit` characters of `text` when `limit` is given."""
    values = list(values)
    wanted = {" ".join(value.split()) for value in values}
    wanted |= {" ".join(_as_latin1(value).split()) for value in values}
    wanted = {value for value in wanted if len(value) >= max(1, shortest)}
    if limit is not None:
        text = text[: limit + _WIDEST * max(map(len, wanted), default=0)]
    spans = sorted(
        span
        for units in (readings(text) if wanted else [])
        for value in wanted
        for span in _spans(units, value, whole_word=len(value) < MIN_MASKED)
    )
    end = len(text) if limit is None else min(limit, len(text))
    shown, at = [], 0
    for start, stop in spans:
        if start >= end:
            break
        if stop <= at:
            continue
        if start > at:
            shown.append(text[at:start])
        if start >= at:
            shown.append(MASK)
        at = max(at, stop)
    shown.append(text[at:end])
    return "".join(shown)
