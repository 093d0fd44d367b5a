"""Text in the PDF report: fonts for every script an incident is written in, and
right-to-left lines in the order they are read.

ReportLab draws a run of text in one TrueType font, glyph after glyph from left to right,
and it embeds TrueType outlines only (not the CFF outlines of Noto CJK, not colour emoji).
So this module:

1. gives every character the first font of a chain whose character map has it: DejaVu Sans
   (Latin, Greek, Cyrillic, Hebrew, Arabic, arrows), then WenQuanYi Micro Hei (Chinese,
   Japanese kana, Korean Hangul), then Symbola (emoji and symbols, in outline);
2. joins Arabic letters into their contextual forms (arabic-reshaper), keeping the harakat
   and spelling out the words the reshaper would otherwise draw as one ligature glyph;
3. puts each wrapped line into visual order with the Unicode bidirectional algorithm
   (python-bidi), drawing brackets mirrored in right-to-left runs and combining marks
   after their letters, and sets a paragraph whose first strong letter is right-to-left
   flush right.

Lines keep their indentation (tabs as four spaces), and a word too long for a line (a URL,
an image digest, Chinese without spaces) breaks where the line is full.

A font missing from the system leaves its characters to the fonts before it (they then
show as empty boxes); `fonts_register` logs which were found. Debian packages:
fonts-dejavu-core, fonts-wqy-microhei, fonts-symbola (scripts/install-system-packages.sh).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any
from unicodedata import bidirectional

import arabic_reshaper
from arabic_reshaper.ligatures import SENTENCES_LIGATURES, WORDS_LIGATURES
from bidi import get_base_level, get_display
from bidi.mirror import MIRRORED
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics, ttfonts
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable

logger = logging.getLogger(__name__)

REGULAR, BOLD, ITALIC = "Report", "Report-Bold", "Report-Italic"
FONT_ROOTS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path("/Library/Fonts"))
PRIMARY_FILES = {
    REGULAR: "DejaVuSans.ttf",
    BOLD: "DejaVuSans-Bold.ttf",
    ITALIC: "DejaVuSans-Oblique.ttf",
}
# Fonts tried, in order, for characters the primary font lacks: (name, file names).
FALLBACKS = (
    ("Report-CJK", ("wqy-microhei.ttc", "DroidSansFallbackFull.ttf")),
    ("Report-Symbols", ("Symbola_hint.ttf", "Symbola.ttf")),
)
# Letters of right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, NKo, their
# presentation forms); text without any is left exactly as it is.
RTL_LETTERS = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")
TAB_SIZE = 4
ELLIPSIS = "…"
RIGHT_TO_LEFT_MARK = "\u200f"

# The reshaper's defaults drop the harakat (vowel marks), which are part of what was written,
# and draw some whole words as one glyph (U+FDF2 for Allah) that DejaVu Sans does not have
# and that copies out of the PDF as a symbol, not the word: both off. Lam-alef stays a
# ligature, as Arabic is always written.
RESHAPER = arabic_reshaper.ArabicReshaper(
    configuration={
        "delete_harakat": False,
        **{name: False for name, _ in (*SENTENCES_LIGATURES, *WORDS_LIGATURES)},
    }
)
# Bidirectional classes that rule L1 sets back to the paragraph's level at the end of a line
# and before a tab: whitespace, isolates, and the formatting characters rule X9 sets aside.
LINE_END_CLASSES = frozenset(
    {"WS", "FSI", "LRI", "RLI", "PDI", "BN", "LRE", "RLE", "LRO", "RLO", "PDF"}
)
# Marks that steer the bidirectional algorithm but have no glyph: dropped once a line is
# in visual order.
BIDI_MARKS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The resolved levels in python-bidi's debug report (`levels: [Level(0,), …]`).
REPORTED_LEVELS = re.compile(r"\n    levels: \[(.*?)\n    \],", re.DOTALL)


# A ToUnicode entry ReportLab writes for a character beyond U+FFFF, as bare hex.
WIDE_ENTRY = re.compile(r"^(<[0-9A-F]{2}> )<([0-9A-F]{5,6})>$", re.MULTILINE)
reportlab_to_unicode = ttfonts.makeToUnicodeCMap


def to_unicode_cmap(font_name: str, subset: list[int]) -> str:
    """ReportLab's ToUnicode map with characters beyond U+FFFF (emoji) written as UTF-16
    surrogate pairs, as the PDF format asks; as bare hex, copying or searching an emoji
    in the PDF finds nothing."""
    return WIDE_ENTRY.sub(
        lambda m: f"{m[1]}<{chr(int(m[2], 16)).encode('utf-16-be').hex().upper()}>",
        reportlab_to_unicode(font_name, subset),
    )


@dataclass
class FontChain:
    """A font and the fallbacks after it, with the choice made for each character kept."""

    names: tuple[str, ...]
    maps: tuple[Mapping[int, int], ...]
    picks: dict[int, str] = field(default_factory=dict)

    def pick(self, code: int) -> str:
        name = self.picks.get(code)
        if name is None:
            name = next(
                (n for n, cmap in zip(self.names, self.maps, strict=True) if code in cmap),
                self.names[0],
            )
            self.picks[code] = name
        return name


@dataclass(frozen=True)
class Fonts:
    family: str
    fallbacks: tuple[str, ...]
    chains: dict[str, FontChain]


def _find(file_name: str) -> Path | None:
    for root in FONT_ROOTS:
        if root.is_dir():
            found = next(root.rglob(file_name), None)
            if found is not None:
                return found
    return None


@functools.cache
def fonts_register() -> Fonts:
    """Register the report's fonts once (a second call returns what the first found)."""
    ttfonts.makeToUnicodeCMap = to_unicode_cmap
    files = {name: _find(file_name) for name, file_name in PRIMARY_FILES.items()}
    if not all(files.values()):
        import reportlab

        bundled = Path(reportlab.__file__).parent / "fonts"
        files = {REGULAR: bundled / "Vera.ttf", BOLD: bundled / "VeraBd.ttf"}
        files[ITALIC] = bundled / "VeraIt.ttf"
        logger.warning("DejaVu Sans not found; post-mortem PDFs use Bitstream Vera")
    maps: dict[str, Mapping[int, int]] = {}
    for name, path in files.items():
        font = TTFont(name, str(path))
        pdfmetrics.registerFont(font)
        maps[name] = font.face.charToGlyph
    pdfmetrics.registerFontFamily(
        REGULAR, normal=REGULAR, bold=BOLD, italic=ITALIC, boldItalic=BOLD
    )
    found: list[str] = []
    for name, candidates in FALLBACKS:
        path = next((p for p in map(_find, candidates) if p is not None), None)
        if path is None:
            logger.warning("no %s font (%s): those characters show as boxes", name, candidates[0])
            continue
        font = TTFont(name, str(path), subfontIndex=0)
        pdfmetrics.registerFont(font)
        maps[name] = font.face.charToGlyph
        found.append(name)
    chains = {
        own: FontChain((own, *found), (maps[own], *(maps[n] for n in found)))
        for own in (REGULAR, BOLD, ITALIC)
    }
    stem = files[REGULAR]
    assert stem is not None
    return Fonts(family=stem.stem, fallbacks=tuple(found), chains=chains)


def runs(text: str, font: str) -> list[tuple[str, str]]:
    """`text` cut into (font, text) runs, each drawn in a font that has its characters."""
    if text.isascii():
        return [(font, text)]
    chain = fonts_register().chains[font]
    result: list[tuple[str, str]] = []
    start, current = 0, ""
    for index, character in enumerate(text):
        name = chain.pick(ord(character))
        if name != current:
            if index > start:
                result.append((current, text[start:index]))
            start, current = index, name
    if text:
        result.append((current, text[start:]))
    return result


def text_width(text: str, font: str, size: float) -> float:
    return sum(pdfmetrics.stringWidth(part, name, size) for name, part in runs(text, font))


def plain(text: str, font: str) -> bool:
    """Whether `text` can be drawn as it is, in `font` alone, left to right."""
    if text.isascii():
        return True
    chain = fonts_register().chains[font]
    return not RTL_LETTERS.search(text) and all(chain.pick(ord(c)) == font for c in text)


def wrap_text(text: str, font: str, size: float, width: float) -> list[str]:
    """Break `text` into lines no wider than `width`: at spaces, and inside words too long
    for a line (URLs, image digests, Chinese). A paragraph keeps its indentation, tabs
    expanded to four-space stops. Widths add up word by word (no kerning)."""
    space = text_width(" ", font, size)
    lines: list[str] = []
    for paragraph in text.replace("\r", "").expandtabs(TAB_SIZE).split("\n"):
        unindented = paragraph.lstrip(" ")
        words = unindented.split(" ")
        # The indentation goes with the first word, so an indented line starts indented.
        words[0] = paragraph[: len(paragraph) - len(unindented)] + words[0]
        line, line_width = "", 0.0
        for word in words:
            word_width = text_width(word, font, size)
            if line and line_width + space + word_width <= width:
                line, line_width = f"{line} {word}", line_width + space + word_width
                continue
            if line:
                lines.append(line)
            line, line_width = word, word_width
            if word_width > width:
                *full, (line, line_width) = _word_pieces(word, font, size, width)
                lines += [piece for piece, _ in full]
        lines.append(line)
    return lines or [""]


def _word_pieces(word: str, font: str, size: float, width: float) -> list[tuple[str, float]]:
    """`word` cut into pieces with their widths, each but the last filling a line (and
    holding a character at least), never cut before a combining mark. Each character is
    measured once and the widths add up: the work grows with the word's length, where
    measuring every candidate prefix took seconds for a page of Chinese."""
    chain = fonts_register().chains[font]
    advances: dict[str, float] = {}
    pieces: list[tuple[str, float]] = []
    start, piece_width = 0, 0.0
    for index, character in enumerate(word):
        advance = advances.get(character)
        if advance is None:
            advance = pdfmetrics.stringWidth(character, chain.pick(ord(character)), size)
            advances[character] = advance
        full = piece_width + advance > width
        if full and index > start and bidirectional(character) != "NSM":
            pieces.append((word[start:index], piece_width))
            start, piece_width = index, 0.0
        piece_width += advance
    pieces.append((word[start:], piece_width))
    return pieces


def _levels(line: str, rtl: bool) -> list[int] | None:
    """The embedding level python-bidi resolves for each character of `line`, or None when
    its report cannot be read. Its Rust algorithm gives the levels only in its debug report,
    one per UTF-8 byte of the line."""
    report = get_display(line, base_dir="R" if rtl else "L", debug=True)
    found = REPORTED_LEVELS.search(report)
    per_byte = [int(level) for level in re.findall(r"\d+", found[1])] if found else []
    if len(per_byte) != len(line.encode()):
        return None
    levels, offset = [], 0
    for character in line:
        levels.append(per_byte[offset])
        offset += len(character.encode())
    return levels


def _visual_order(line: str, rtl: bool) -> str:
    """`line` in the order it is drawn, from the left, with its base direction right to left
    if `rtl`. python-bidi's Rust algorithm resolves the levels and reverses the runs (rules
    L1 and L2) but leaves out L3 and L4: a combining mark would come before its letter (and
    ReportLab draws a mark over the glyph before it), and a bracket in a right-to-left run
    would open away from the words it encloses. For a line with either, the runs are
    reversed here from python-bidi's levels, a letter and its marks as one, and the
    characters of right-to-left runs mirrored."""
    levels = None
    if any(character in MIRRORED or bidirectional(character) == "NSM" for character in line):
        levels = _levels(line, rtl)
    if levels is None:
        return BIDI_MARKS.sub("", str(get_display(line, base_dir="R" if rtl else "L")))
    paragraph_level = int(rtl)
    resetting = True  # L1, from the end of the line back
    for index in range(len(line) - 1, -1, -1):
        kind = bidirectional(line[index])
        if kind in ("S", "B"):
            levels[index], resetting = paragraph_level, True
        elif resetting and kind in LINE_END_CLASSES:
            levels[index] = paragraph_level
        else:
            resetting = False
    clusters: list[str] = []  # a letter and the combining marks after it (L3)
    cluster_levels: list[int] = []
    for character, level in zip(line, levels, strict=True):
        if clusters and bidirectional(character) == "NSM" and cluster_levels[-1] == level:
            clusters[-1] += character
        else:
            clusters.append(character)
            cluster_levels.append(level)
    # L2: from the highest level down to the lowest odd one (none: nothing to reverse).
    highest = max(cluster_levels)
    lowest_odd = min((level for level in cluster_levels if level % 2), default=highest + 1)
    order = list(range(len(clusters)))
    for level in range(highest, lowest_odd - 1, -1):
        order = _reverse_runs(order, cluster_levels, level)
    drawn = "".join(
        "".join(MIRRORED.get(character, character) for character in clusters[index])  # L4
        if cluster_levels[index] % 2
        else clusters[index]
        for index in order
    )
    return BIDI_MARKS.sub("", drawn)


def _reverse_runs(order: list[int], levels: list[int], level: int) -> list[int]:
    """`order` with every run of its entries at `level` or above reversed."""
    reordered: list[int] = []
    for above, run in groupby(order, key=lambda index: levels[index] >= level):
        entries = list(run)
        reordered += entries[::-1] if above else entries
    return reordered


@dataclass(frozen=True)
class Line:
    """One line as drawn: characters in visual order, and whether it sets flush right."""

    text: str
    rtl: bool = False


def lay_out(text: str, font: str, size: float, width: float) -> list[Line]:
    """`text` wrapped to `width`, each paragraph shaped and each line in visual order."""
    laid: list[Line] = []
    for paragraph in text.replace("\r", "").split("\n"):
        if not RTL_LETTERS.search(paragraph):
            laid += [Line(line) for line in wrap_text(paragraph, font, size, width)]
            continue
        shaped = RESHAPER.reshape(paragraph)
        rtl = get_base_level(shaped) == 1
        laid += [
            Line(_visual_order(line, rtl), rtl) for line in wrap_text(shaped, font, size, width)
        ]
    return laid


def visual(text: str) -> str:
    """A single line of `text` shaped and in visual order (for running heads)."""
    if not RTL_LETTERS.search(text):
        return text
    return _visual_order(RESHAPER.reshape(text), rtl=False)


def draw_line(canvas: Canvas, x: float, y: float, line: Line, font: str, size: float) -> float:
    """Draw `line` from `x` on baseline `y`, run by run; return its width."""
    start = x
    for name, part in runs(line.text, font):
        canvas.setFont(name, size)
        canvas.drawString(x, y, part)
        x += pdfmetrics.stringWidth(part, name, size)
    return x - start


@functools.lru_cache(maxsize=64)
def fit(text: str, font: str, size: float, width: float) -> str:
    """`text` cut at its (logical) end with an ellipsis so that, put in visual order by
    `visual`, it is no wider than `width`: measured as drawn, with Arabic letters joined.
    An ellipsis after a right-to-left letter carries a right-to-left mark, so it ends that
    run, on its left, rather than the line. (Running heads repeat: results are kept.)"""

    def drawn_width(candidate: str) -> float:
        return text_width(visual(candidate), font, size)

    if drawn_width(text) <= width:
        return text
    # The longest cut that fits, by halving: widths grow with the length (nearly: a letter
    # cut from the one after it takes its final form).
    fits, too_long = 1, len(text)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if drawn_width(_cut(text, middle)) <= width:
            fits = middle
        else:
            too_long = middle
    return _cut(text, fits)


def _cut(text: str, length: int) -> str:
    """The first `length` characters of `text` and an ellipsis in the direction they end in."""
    kept = text[:length].rstrip()
    for character in reversed(kept):
        kind = bidirectional(character)
        if kind in ("R", "AL"):
            return kept + ELLIPSIS + RIGHT_TO_LEFT_MARK
        if kind == "L":
            break
    return kept + ELLIPSIS


class TextBlock(Flowable):  # type: ignore[misc]  # ReportLab has no type hints
    """Plain text in a paragraph style, wrapped, shaped and set by this module: a cheaper,
    script-aware stand-in for a Paragraph with no markup. It splits between lines, so a
    block longer than a page goes on over the next (in the body and in table cells)."""

    def __init__(
        self,
        text: str,
        style: ParagraphStyle,
        lines: list[Line] | None = None,
        laid_width: float | None = None,
    ) -> None:
        super().__init__()
        self.text, self.style = text, style
        self.lines = lines
        self.laid_width = laid_width

    def _lines(self, width: float) -> list[Line]:
        if self.lines is None or (self.text and self.laid_width != width):
            self.lines = lay_out(self.text, self.style.fontName, self.style.fontSize, width)
            self.laid_width = width
        return self.lines

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        self.width = available_width
        self.height = len(self._lines(available_width)) * self.style.leading
        return self.width, self.height

    def split(self, available_width: float, available_height: float) -> list[Any]:
        lines = self._lines(available_width)
        fit_count = int((available_height + 1e-6) // self.style.leading)
        if fit_count <= 0:
            return []
        if fit_count >= len(lines):
            return [self]
        head = TextBlock("", self.style, lines[:fit_count], available_width)
        tail = TextBlock("", self.style, lines[fit_count:], available_width)
        head.style = ParagraphStyle("head", parent=self.style, spaceAfter=0)
        tail.style = ParagraphStyle("tail", parent=self.style, spaceBefore=0)
        return [head, tail]

    def getSpaceBefore(self) -> float:  # noqa: N802  (ReportLab's name)
        return float(self.style.spaceBefore)

    def getSpaceAfter(self) -> float:  # noqa: N802  (ReportLab's name)
        return float(self.style.spaceAfter)

    def draw(self) -> None:
        style, canvas = self.style, self.canv
        font, size = style.fontName, style.fontSize
        canvas.setFillColor(style.textColor)
        y = self.height - size
        for line in self._lines(self.width):
            x = 0.0
            if line.rtl:
                x = self.width - text_width(line.text, font, size)
            draw_line(canvas, x, y, line, font, size)
            y -= style.leading
