"""The PDF in every script an incident is written in: Chinese, Japanese and Korean, emoji,
Hebrew and Arabic read right to left, in the body, the timeline and the running head."""

from __future__ import annotations

import io
from typing import Any

import arabic_reshaper
import pytest
from bidi import get_display
from pypdf import PdfReader
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase.pdfmetrics import stringWidth

from incidents import services as incident_services
from postmortems import selectors, services
from postmortems.exports import render_pdf
from postmortems.exports.pdf_text import (
    BOLD,
    REGULAR,
    TextBlock,
    fit,
    fonts_register,
    runs,
    text_width,
    visual,
    wrap_text,
)

pytestmark = pytest.mark.django_db

CJK_TITLE = "結帳失敗：支払いエラー 결제 실패"
HEBREW = "שלום עולם"
ARABIC = "مرحبا بالعالم"
EMOJI = "🚀🔥"


def _squeezed(text: str) -> str:
    return "".join(text.split())


def _pages(content: bytes) -> list[str]:
    return [_squeezed(page.extract_text()) for page in PdfReader(io.BytesIO(content)).pages]


def _fonts(content: bytes) -> set[str]:
    resources: list[Any] = [page["/Resources"] for page in PdfReader(io.BytesIO(content)).pages]
    return {
        str(font["/BaseFont"]).split("+")[-1]
        for resource in resources
        for font in resource["/Font"].values()
    }


class RecordingCanvas:
    """Just enough of a canvas to see what a block draws, where and in which font."""

    def __init__(self) -> None:
        self.drawn: list[tuple[float, float, str, str]] = []
        self.font = ""

    def setFillColor(self, colour: Any) -> None:  # noqa: N802
        pass

    def setFont(self, name: str, size: float) -> None:  # noqa: N802
        self.font = name

    def drawString(self, x: float, y: float, text: str) -> None:  # noqa: N802
        self.drawn.append((x, y, text, self.font))


def _drawn_lines(canvas: RecordingCanvas) -> list[str]:
    """What the canvas shows, line by line from the top, each read from left to right."""
    lines: dict[float, list[tuple[float, str]]] = {}
    for x, y, text, _ in canvas.drawn:
        lines.setdefault(y, []).append((x, text))
    return ["".join(text for _, text in sorted(lines[y])) for y in sorted(lines, reverse=True)]


def _draw(text: str, width: float, font: str = REGULAR) -> tuple[TextBlock, RecordingCanvas]:
    fonts_register()
    block = TextBlock(text, ParagraphStyle("t", fontName=font, fontSize=10, leading=12))
    block.wrap(width, 1000)
    block.canv = RecordingCanvas()
    block.draw()
    return block, block.canv


def test_every_script_is_drawn_in_a_font_that_has_it(ic, incident):
    assert fonts_register().fallbacks == ("Report-CJK", "Report-Symbols")
    incident.title = CJK_TITLE
    incident.save(update_fields=["title"])
    incident_services.note_add(incident=incident, author=ic, body=f"{HEBREW} v1.2 {EMOJI}")
    incident_services.note_add(incident=incident, author=ic, body=f"deploy {ARABIC} 完了")
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    services.postmortem_edit(
        postmortem=postmortem,
        actor=ic,
        values={"root_cause": f"{HEBREW}: {ARABIC} {EMOJI}", "prevention": "監視を追加する"},
        base_revision=postmortem.revision,
    )
    content = render_pdf(selectors.postmortem_report(incident.pk))

    assert {"DejaVuSans", "DejaVuSans-Bold", "WenQuanYiMicroHei-0", "Symbola"} <= _fonts(content)
    pages = _pages(content)
    text = "".join(pages)
    assert _squeezed(CJK_TITLE) in pages[0]
    assert "監視を追加する" in text and "完了" in text
    # Emoji are copied out of the PDF as themselves (UTF-16 pairs in the ToUnicode map).
    assert EMOJI in text or EMOJI[::-1] in text
    # pypdf reads right-to-left glyphs from right to left: drawn in visual order, the words
    # come back in the order they were written.
    assert _squeezed(HEBREW) in text
    assert _squeezed(arabic_reshaper.reshape(ARABIC)) in text
    assert "\ufffd" not in text and "\x00" not in text


def test_the_running_head_shows_a_cjk_title_on_every_page(ic, incident):
    incident.title = CJK_TITLE
    incident.save(update_fields=["title"])
    for number in range(150):
        incident_services.note_add(incident=incident, author=ic, body=f"記録 {number}")
    pages = _pages(render_pdf(selectors.postmortem_report(incident.pk)))
    assert len(pages) >= 3
    assert all(f"#{incident.pk}{_squeezed(CJK_TITLE)}" in page for page in pages)


def test_a_right_to_left_paragraph_is_set_flush_right_line_by_line():
    words = [f"{HEBREW} {number}" for number in range(12)]
    block, canvas = _draw(" ".join(words), width=150)
    lines: dict[float, list[tuple[float, float, str, str]]] = {}
    for x, y, text, font in canvas.drawn:
        lines.setdefault(y, []).append((x, y, text, font))
    assert len(lines) >= 3
    tops = sorted(lines, reverse=True)
    read = ""
    for y in tops:
        runs_of_line = sorted(lines[y])
        drawn = "".join(text for _, _, text, _ in runs_of_line)
        x, _, last, font = runs_of_line[-1]
        right = x + stringWidth(last, font, 10)
        assert right == pytest.approx(150, abs=0.01)  # flush right
        assert runs_of_line[0][0] >= -0.01
        read += " " + get_display(drawn, base_dir="R")  # back to the order it was written
    # Top line first, each read right to left, gives the text as written.
    assert read.split() == " ".join(words).split()


def test_a_left_to_right_line_keeps_its_order_and_reverses_only_the_hebrew():
    _, canvas = _draw(f"rolled back {HEBREW} at 10:02", width=400)
    drawn = "".join(text for _, _, text, _ in sorted(canvas.drawn))
    assert drawn == f"rolled back {HEBREW[::-1]} at 10:02"
    assert min(x for x, *_ in canvas.drawn) == 0


def test_arabic_letters_are_joined_before_they_are_drawn():
    _, canvas = _draw(ARABIC, width=400)
    drawn = "".join(text for _, _, text, _ in sorted(canvas.drawn))
    assert not any("\u0600" <= c <= "\u06ff" for c in drawn)  # presentation forms only
    assert get_display(drawn, base_dir="R") == arabic_reshaper.reshape(ARABIC)


def test_runs_switch_font_only_where_the_script_needs_it():
    fonts_register()
    assert runs("deploy 結帳 ok 🚀", BOLD) == [
        (BOLD, "deploy "),
        ("Report-CJK", "結帳"),
        (BOLD, " ok "),
        ("Report-Symbols", "🚀"),
    ]
    assert runs("plain ascii", REGULAR) == [(REGULAR, "plain ascii")]
    assert runs("", REGULAR) == [(REGULAR, "")]


@pytest.mark.parametrize(
    "text",
    [
        "結" * 5000,
        (HEBREW + " ") * 500,
        EMOJI * 2500,
        (ARABIC + " 🚀 ") * 300,
        "<b>&amp;</b>\x1b[31m",
    ],
)
def test_blocks_at_the_maximum_length_fit_their_width(text):
    block, canvas = _draw(text[:5000], width=120)
    widths: dict[float, float] = {}
    for x, y, drawn, font in canvas.drawn:
        assert x >= -0.01
        widths[y] = max(widths.get(y, 0), x + stringWidth(drawn, font, 10))
    assert max(widths.values()) <= 120.01
    assert block.height == len(widths) * 12


def test_a_long_note_in_every_script_lays_out_over_pages(ic, incident):
    incident_services.note_add(incident=incident, author=ic, body="結帳" * 2500)
    incident_services.note_add(incident=incident, author=ic, body=(HEBREW + " ") * 500)
    incident_services.note_add(incident=incident, author=ic, body=EMOJI * 2499 + "終")
    text = "".join(_pages(render_pdf(selectors.postmortem_report(incident.pk))))
    assert text.count("結帳") >= 2400  # a few are cut where a line ends mid-pair
    assert text.count(_squeezed(HEBREW)) == 500
    assert "終" in text


def test_a_title_too_wide_for_the_head_is_cut_with_an_ellipsis():
    fonts_register()
    cut = fit("結" * 300, REGULAR, 7.5, 200)
    assert cut.endswith("…") and text_width(cut, REGULAR, 7.5) <= 200
    assert fit("short", REGULAR, 7.5, 200) == "short"


@pytest.mark.parametrize(
    ("written", "drawn"),
    [
        # A right-to-left line: read from the right, each bracket opens towards its word.
        ("שלום (עולם) [א] {ב} <ג> «ד»", "«ד» <ג> {ב} [א] (םלוע) םולש"),
        # Brackets in a left-to-right line, or around a left-to-right run, stay as written.
        ("rolled back (שלום) at 10:02", "rolled back (םולש) at 10:02"),
        ("שלום f(x) עולם", "םלוע f(x) םולש"),
    ],
)
def test_brackets_open_towards_the_text_they_enclose(written, drawn):
    _, canvas = _draw(written, width=400)
    assert _drawn_lines(canvas) == [drawn]


def test_arabic_keeps_its_harakat_each_on_its_letter():
    _, canvas = _draw("مُحَدَّث", width=400)  # "updated", with damma, fatha, fatha and shadda
    # From the left: isolated theh; final dal, fatha, shadda; medial hah, fatha; initial
    # meem, damma. ReportLab draws a mark over the glyph before it: each follows its letter.
    assert _drawn_lines(canvas) == ["\ufe99\ufeaa\u064e\u0651\ufea4\u064e\ufee3\u064f"]


def test_allah_is_drawn_in_its_letters_not_as_the_ligature():
    _, canvas = _draw("الله", width=400)
    # Final heh, medial lam, initial lam, alef: U+FDF2 is not in DejaVu Sans, and copied
    # out of the PDF it would not read as the word.
    assert _drawn_lines(canvas) == ["\ufeea\ufee0\ufedf\ufe8d"]


def test_a_long_word_is_broken_where_each_line_is_full():
    fonts_register()
    word = ("i" * 40 + "結" * 60) * 50  # narrow and wide letters, 5,000 in all
    lines = wrap_text(word, REGULAR, 10, 120)
    assert "".join(lines) == word
    assert all(text_width(line, REGULAR, 10) <= 120 for line in lines)
    for line, following in zip(lines, lines[1:], strict=False):
        assert text_width(line + following[0], REGULAR, 10) > 120


def test_a_long_word_is_not_broken_before_a_combining_mark():
    fonts_register()
    lines = wrap_text("ab\u0301" * 1600, REGULAR, 10, 120)
    assert len(lines) > 1
    assert not any(line.startswith("\u0301") for line in lines)


def test_indented_lines_keep_their_indentation():
    _, canvas = _draw("    retry 1\n\tretry 2\nretry 3", width=400)
    assert _drawn_lines(canvas) == ["    retry 1", "    retry 2", "retry 3"]


def test_an_indented_right_to_left_line_is_indented_from_the_right():
    block, canvas = _draw(f"    {HEBREW}", width=400)
    assert _drawn_lines(canvas) == [f"{HEBREW[::-1]}    "]
    x, _, text, font = canvas.drawn[-1]
    assert x + stringWidth(text, font, 10) == pytest.approx(400)


def test_a_cut_right_to_left_title_ends_with_the_ellipsis_on_its_left():
    fonts_register()
    title = " ".join([HEBREW] * 10)
    head = visual(fit(f"#12 {title}", REGULAR, 7.5, 100))
    assert text_width(head, REGULAR, 7.5) <= 100
    # The title is cut at its end, which a right-to-left reader reaches on the left.
    assert head.startswith("#12 …")
    assert title.startswith(head.removeprefix("#12 …")[::-1])


def test_a_cut_arabic_title_is_measured_with_its_letters_joined():
    fonts_register()
    head = visual(fit(" ".join([ARABIC] * 10), REGULAR, 7.5, 200))
    # Joined letters are narrower than the letters alone: the cut uses the width to the end.
    assert 190 <= text_width(head, REGULAR, 7.5) <= 200
