"""Masking secret values in what an API sends back (an error's explanation) before a backend
passes it on to the step's log, its failure reason or the timeline.

An API that repeats a value it refused may show it as sent or encoded: escaped as JSON does
it in any dialect (`\\u00e9` or `\\u00E9`, Go's `\\u0026` for `&`, `\\/` for `/`, a
surrogate pair for an emoji), as Python's repr does it (`\\'`, `\\xe9`), escaped twice (a
JSON document quoted inside another), as HTML entities, percent-encoded (UTF-8 or Latin-1,
`+` for a space), as UTF-8 read as Latin-1, or with its whitespace collapsed
(executors.rest quotes an answer on one line). Rather than list every
form a value may take, the text is decoded: every way of reading it (as it is, with one to
three levels of escapes undone, entities or percent-encoding undone, whitespace runs as one
space) is searched for each value, and what matches is masked in the text as it was.

A value of fewer than MIN_MASKED characters is masked only where it stands as a whole word
(not next to a letter or digit), since masking every "ab" of a message hides the message
rather than protects anything; below `shortest` it is left alone.

Mask before cutting: a caller that shortens the text passes `limit`, and the text is cut
after masking, in the text's own positions, so a value is never left half-shown where the
cut falls. Text far past `limit` is not read (see READ_AHEAD), so a huge answer costs little.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from executors.url_credentials import MASK

MIN_MASKED = 4
# How far past `limit` text is read, in characters per character of the longest value: as
# far as most encodings take a value (JSON escapes take 6). A value whose encoding runs past
# that is masked from its start all the same, since the text read ends inside it.
READ_AHEAD = 8
# How many decodings are stacked at most (JSON quoted in JSON quoted in a third).
_DEPTH = 3
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|x([0-9a-fA-F]{2})|(.))", re.S)
_SHORT_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_PERCENT = re.compile(r"(?:%[0-9a-fA-F]{2}|\+)+")


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
    """A run of %XX (and + for a space, as a query string has it) read as UTF-8, or as
    Latin-1 when it is not UTF-8: each character spans the escapes it was made of."""
    run = found.group()
    spans, data = [], bytearray()
    at = 0
    while at < len(run):
        size = 1 if run[at] == "+" else 3
        data.extend(b" " if size == 1 else bytes.fromhex(run[at + 1 : at + 3]))
        spans.append((at, at + size))
        at += size
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    one_byte_each = len(text) == len(data)
    read: list[tuple[str, int, int]] = []
    byte = 0
    for char in text:
        width = 1 if one_byte_each else len(char.encode())
        read.append((char, spans[byte][0], spans[byte + width - 1][1]))
        byte += width
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


def _cut_start(units: Reading, value: str) -> tuple[int, int] | None:
    """The span of the longest start of `value` (of at least MIN_MASKED characters) that
    ends the reading, or None."""
    joined = "".join(unit.char for unit in units)
    # The cut may fall inside an encoded character, which then reads as other characters.
    for dropped in range(min(READ_AHEAD * 2, len(joined))):
        end = len(joined) - dropped
        at = joined.find(value[0], max(0, end - len(value) + 1), end)
        while at >= 0:
            if end - at >= MIN_MASKED and value.startswith(joined[at:end]):
                return units[at].start, units[-1].end
            at = joined.find(value[0], at + 1, end)
    return None


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
    read_to = len(text)
    if limit is not None:
        limit = max(0, limit)
        read_to = min(read_to, limit + READ_AHEAD * max(map(len, wanted), default=0))
    cut_short = read_to < len(text)
    text = text[:read_to]
    spans: list[tuple[int, int]] = []
    for units in readings(text) if wanted else []:
        for value in wanted:
            spans.extend(_spans(units, value, whole_word=len(value) < MIN_MASKED))
            ending = _cut_start(units, value) if cut_short and units else None
            if ending is not None:
                spans.append(ending)
    spans.sort()
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
