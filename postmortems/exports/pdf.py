"""The report as a PDF, laid out by ReportLab's platypus.

ReportLab rather than an HTML renderer: the timeline of a long incident runs to ten
thousand entries, and measured here WeasyPrint needed 9 s for them as bare paragraphs and
45 s as a table, where this layout takes under 2 s (docs/postmortem.md has the figures).
The timeline is cut into tables of a few dozen rows, each wrapped once with precomputed
line breaks; one huge table would be re-split on every page.

Fonts, scripts and right-to-left text are pdf_text's: DejaVu Sans from the system, with
fallbacks for Chinese, Japanese, Korean and emoji, and each line in visual order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from io import BytesIO
from typing import Any

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Spacer,
    Table,
    TableStyle,
)

from postmortems.exports.pdf_text import (
    BOLD,
    REGULAR,
    Line,
    TextBlock,
    draw_line,
    fit,
    fonts_register,
    lay_out,
    plain,
    visual,
)
from postmortems.exports.text import (
    clock,
    count,
    instant,
    money,
    report_state,
    text_or,
    verdict,
    zone_name,
)
from postmortems.selectors import PostmortemReport

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 16 * mm, 20 * mm, 18 * mm
TEXT_WIDTH = PAGE_WIDTH - 2 * MARGIN_X

INK = colors.HexColor("#1d2330")
QUIET = colors.HexColor("#5d6679")
RULE = colors.HexColor("#d5d9e0")
BAND = colors.HexColor("#eef1f5")
GOOD = colors.HexColor("#137a3d")
BAD = colors.HexColor("#b42318")
STAR_BAND = colors.HexColor("#fff6d6")

# Timeline columns: entry, time, kind, who, what happened.
TIMELINE_WIDTHS = (13 * mm, 30 * mm, 26 * mm, 22 * mm)
TIMELINE_BODY_WIDTH = TEXT_WIDTH - sum(TIMELINE_WIDTHS)
TIMELINE_FONT_SIZE, TIMELINE_LEADING, CELL_PAD = 7.5, 9.2, 2.0
TIMELINE_CHUNK = 40
# The most lines of one entry in one table row; a longer entry goes on in further rows.
TIMELINE_ROW_LINES = 30
TIMELINE_HEADER_HEIGHT = 7 * mm


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle(
        "body", fontName=REGULAR, fontSize=9.5, leading=13, textColor=INK, alignment=TA_LEFT
    )
    return {
        "body": base,
        "quiet": ParagraphStyle("quiet", parent=base, fontSize=8.5, leading=11, textColor=QUIET),
        "title": ParagraphStyle(
            "title", parent=base, fontName=BOLD, fontSize=17, leading=21, spaceAfter=4
        ),
        "h1": ParagraphStyle(
            "h1",
            parent=base,
            fontName=BOLD,
            fontSize=12.5,
            leading=16,
            spaceBefore=10,
            spaceAfter=4,
        ),
        "h2": ParagraphStyle(
            "h2", parent=base, fontName=BOLD, fontSize=10.5, leading=14, spaceBefore=6, spaceAfter=3
        ),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8.5, leading=10.5),
    }


def _para(text: str, style: ParagraphStyle) -> TextBlock:
    """A paragraph of plain text, line breaks kept, in whatever scripts it is written."""
    return TextBlock(text, style)


class _NumberedCanvas(Canvas):
    """A canvas that holds its pages back until the end, so each footer can say
    "page n of N"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held_pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802  (ReportLab's name)
        self._held_pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._held_pages)
        for state in self._held_pages:
            self.__dict__.update(state)
            self.setFont(REGULAR, 7.5)
            self.setFillColor(QUIET)
            self.drawRightString(
                PAGE_WIDTH - MARGIN_X, MARGIN_BOTTOM - 9 * mm, f"Page {self._pageNumber} of {total}"
            )
            super().showPage()
        super().save()


class _Decorations:
    """What every page carries: a running head with the report's name and state, and a
    footer with the generation time; timeline pages also repeat the column headings."""

    def __init__(self, report: PostmortemReport) -> None:
        kind = "Drill report" if report.kind == "drill" else "Post-mortem"
        self.head = f"Backout · {kind} · #{report.incident.pk} {report.incident.title}"
        self.state = report.state_label
        self.generated = f"Generated {instant(report.generated_at)} {zone_name()}"

    def page(self, canvas: Canvas, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(REGULAR, 7.5)
        canvas.setFillColor(QUIET)
        top = PAGE_HEIGHT - MARGIN_TOP + 7 * mm
        state_width = canvas.stringWidth(self.state, REGULAR, 7.5)
        head = fit(self.head, REGULAR, 7.5, TEXT_WIDTH - state_width - 6 * mm)
        draw_line(canvas, MARGIN_X, top, Line(visual(head)), REGULAR, 7.5)
        canvas.setFont(REGULAR, 7.5)
        canvas.drawRightString(PAGE_WIDTH - MARGIN_X, top, self.state)
        canvas.setStrokeColor(RULE)
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN_X, top - 2.5 * mm, PAGE_WIDTH - MARGIN_X, top - 2.5 * mm)
        canvas.line(MARGIN_X, MARGIN_BOTTOM - 5 * mm, PAGE_WIDTH - MARGIN_X, MARGIN_BOTTOM - 5 * mm)
        canvas.drawString(MARGIN_X, MARGIN_BOTTOM - 9 * mm, self.generated)
        canvas.restoreState()

    def timeline_page(self, canvas: Canvas, doc: Any) -> None:
        self.page(canvas, doc)
        canvas.saveState()
        y = PAGE_HEIGHT - MARGIN_TOP - TIMELINE_HEADER_HEIGHT
        canvas.setFillColor(BAND)
        canvas.rect(MARGIN_X, y, TEXT_WIDTH, TIMELINE_HEADER_HEIGHT, stroke=0, fill=1)
        canvas.setFillColor(INK)
        canvas.setFont(BOLD, TIMELINE_FONT_SIZE)
        x = MARGIN_X
        for heading, width in zip(
            ("Entry", f"Time ({zone_name()})", "Kind", "Who", "What happened"),
            (*TIMELINE_WIDTHS, TIMELINE_BODY_WIDTH),
            strict=True,
        ):
            canvas.drawString(x + CELL_PAD + 1, y + 2.4 * mm, heading)
            x += width
        canvas.restoreState()


def _key_values(rows: Iterable[tuple[str, str]], styles: dict[str, ParagraphStyle]) -> Table:
    data = [[_para(key, styles["quiet"]), _para(value, styles["cell"])] for key, value in rows]
    table = Table(data, colWidths=(38 * mm, TEXT_WIDTH - 38 * mm), hAlign="LEFT", splitInRow=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), REGULAR),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
                ("TOPPADDING", (0, 0), (-1, -1), 2.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
            ]
        )
    )
    return table


def _grid(
    headings: list[str],
    rows: list[list[str]],
    widths: list[float],
    styles: dict[str, ParagraphStyle],
    colour: Callable[[int, int, str], colors.Color | None] | None = None,
) -> Table:
    """A ruled table with a shaded heading row repeated across pages."""
    header_style = ParagraphStyle("th", parent=styles["cell"], fontName=BOLD)
    data: list[list[Any]] = [[_para(h, header_style) for h in headings]]
    commands: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), REGULAR),
        ("BACKGROUND", (0, 0), (-1, 0), BAND),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            tint = colour(r, c, value) if colour else None
            style = styles["cell"]
            if tint is not None:
                style = ParagraphStyle(f"c{r}{c}", parent=style, textColor=tint, fontName=BOLD)
            cells.append(_para(value, style))
        data.append(cells)
    # splitInRow: a cell longer than a page (a failure reason, an action's title) goes on
    # over the next page instead of failing the layout.
    table = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT", splitInRow=1)
    table.setStyle(TableStyle(commands))
    return table


def _verdict_colour(column: int) -> Callable[[int, int, str], colors.Color | None]:
    def pick(row: int, col: int, value: str) -> colors.Color | None:
        if col != column:
            return None
        return GOOD if value == "met" else BAD if value == "missed" else None

    return pick


def _timeline_tables(report: PostmortemReport) -> list[Flowable]:
    """The timeline as tables of TIMELINE_CHUNK rows with hand-wrapped cells: plain strings
    are far cheaper to lay out than one paragraph per cell."""
    widths = [*TIMELINE_WIDTHS, TIMELINE_BODY_WIDTH]
    inner = [w - 2 * CELL_PAD for w in widths]
    size = TIMELINE_FONT_SIZE
    base = [
        ("FONT", (0, 0), (-1, -1), REGULAR, size, TIMELINE_LEADING),
        ("TEXTCOLOR", (0, 0), (-1, -1), INK),
        ("TEXTCOLOR", (0, 0), (0, -1), QUIET),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.3, RULE),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PAD),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PAD),
        ("TOPPADDING", (0, 0), (-1, -1), 1.6),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.9),
    ]
    # One entry may be longer than a page (a note is up to 5,000 characters): its text goes
    # on in rows of its own, each short enough for any page, so no row is ever taller than
    # the frame. Lines of one font, left to right, stay plain strings (cheap to lay out);
    # other scripts and right-to-left lines become text blocks.
    cell_style = ParagraphStyle(
        "timeline", fontName=REGULAR, fontSize=size, leading=TIMELINE_LEADING, textColor=INK
    )
    bold_style = ParagraphStyle("timeline-bold", parent=cell_style, fontName=BOLD)

    def cell(lines: list[Line], font: str, width: float) -> str | TextBlock:
        if all(not line.rtl and plain(line.text, font) for line in lines):
            return "\n".join(line.text for line in lines)
        return TextBlock("", bold_style if font == BOLD else cell_style, lines, width)

    lines: list[tuple[list[Any], bool]] = []
    for row in report.timeline:
        font = BOLD if row.starred else REGULAR
        body = lay_out(("★ " if row.starred else "") + row.body, font, size, inner[4])
        for part in range(0, len(body), TIMELINE_ROW_LINES):
            text = cell(body[part : part + TIMELINE_ROW_LINES], font, inner[4])
            if part == 0:
                cells: list[Any] = [
                    str(row.id),
                    instant(row.at),
                    cell(lay_out(row.kind_label, REGULAR, size, inner[2]), REGULAR, inner[2]),
                    cell(lay_out(row.who, REGULAR, size, inner[3]), REGULAR, inner[3]),
                    text,
                ]
            else:
                cells = ["", "", "", "(continued)", text]
            lines.append((cells, row.starred))
    flowables: list[Flowable] = []
    for start in range(0, len(lines), TIMELINE_CHUNK):
        data = []
        commands = list(base)
        for index, (cells, starred) in enumerate(lines[start : start + TIMELINE_CHUNK]):
            data.append(cells)
            if starred:
                commands.append(("BACKGROUND", (0, index), (-1, index), STAR_BAND))
                commands.append(("FONT", (4, index), (4, index), BOLD, size, TIMELINE_LEADING))
        table = Table(data, colWidths=widths, hAlign="LEFT")
        table.setStyle(TableStyle(commands))
        flowables.append(table)
    return flowables


def render_pdf(report: PostmortemReport) -> bytes:
    """The whole report as an A4 PDF; the timeline, the longest part, comes last and
    starts on its own pages with the column headings repeated at the top of each."""
    fonts_register()
    styles = _styles()
    incident, postmortem = report.incident, report.postmortem
    story: list[Flowable] = [_para(report.title, styles["title"])]
    services = ", ".join(f"{s.name} ({s.get_backend_display()})" for s in report.services)
    story.append(
        _key_values(
            [
                ("Severity", incident.get_severity_display()),
                ("Status", incident.get_status_display()),
                ("Environment", incident.get_environment_display()),
                ("Commander", incident.commander.get_username() if incident.commander else "none"),
                ("Services", services or "none named"),
                ("Duration", f"{clock(report.duration)} (impact start to resolution)"),
                ("Report", report_state(report)),
                ("Times", zone_name()),
            ],
            styles,
        )
    )
    summary = postmortem.summary if postmortem else incident.summary
    story += [_para("Summary", styles["h1"]), _para(text_or(summary), styles["body"])]

    story.append(_para("Impact", styles["h1"]))
    if postmortem is None:
        story.append(_para("Not recorded yet.", styles["body"]))
    else:
        story.append(
            _key_values(
                [
                    ("Users affected", count(postmortem.users_affected)),
                    ("Failed requests", count(postmortem.failed_requests)),
                    ("Data loss", text_or(postmortem.data_loss, "not recorded")),
                    (
                        "Revenue impact",
                        money(postmortem.revenue_impact, postmortem.revenue_currency),
                    ),
                ],
                styles,
            )
        )

    metrics = _grid(
        ["Phase", "Took", "Target", "Verdict"],
        [[m.label, clock(m.value), clock(m.target), verdict(m.met)] for m in report.metrics],
        [60 * mm, 30 * mm, 30 * mm, 30 * mm],
        styles,
        _verdict_colour(3),
    )
    restore_line = (
        f"RTO {clock(incident.rto)} (detection to service restored): "
        f"{clock(incident.time_to_restore)}, {verdict(incident.rto_met)}. "
        f"RPO {clock(incident.rpo)}."
    )
    instants = _grid(
        ["Instant", "When"],
        [[label, instant(at)] for _, label, at in report.instants],
        [60 * mm, 60 * mm],
        styles,
    )
    story += [
        KeepTogether(
            [
                _para("Recovery metrics", styles["h1"]),
                metrics,
                Spacer(1, 3),
                _para(restore_line, styles["body"]),
            ]
        ),
        KeepTogether([_para("Key instants", styles["h2"]), instants]),
    ]

    for heading, field in (
        ("Root cause", "root_cause"),
        ("Resolution", "resolution"),
        ("Prevention", "prevention"),
        ("Lessons learned", "lessons_learned"),
    ):
        story += [
            _para(heading, styles["h1"]),
            _para(text_or(getattr(postmortem, field, "")), styles["body"]),
        ]

    story.append(_para("Action items", styles["h1"]))
    if report.action_items:
        rows = []
        for item in report.action_items:
            due = item.due_on.isoformat() if item.due_on else "—"
            if item.overdue:
                due += " (overdue)"
            done = f"yes, {instant(item.done_at)} by {item.done_by}" if item.done else "no"
            rows.append(
                [
                    item.title + (f"\n{item.ticket_url}" if item.ticket_url else ""),
                    item.owner or "nobody yet",
                    due,
                    done,
                ]
            )
        story.append(
            _grid(
                ["Action", "Owner", "Due", "Done"],
                rows,
                [84 * mm, 28 * mm, 28 * mm, TEXT_WIDTH - 140 * mm],
                styles,
            )
        )
    else:
        story.append(_para("None recorded.", styles["body"]))

    story.append(_para("Rollback runs", styles["h1"]))
    if not report.runs:
        story.append(_para("No rollback was run.", styles["body"]))
    for run in report.runs:
        tags = " (drill)" if run.drill else " (dry run)" if run.dry_run else ""
        lines = [
            f"Started {instant(run.started_at)}, finished {instant(run.finished_at)}; took "
            f"{clock(run.duration)} against a {clock(run.target)} target ({verdict(run.met)})."
        ]
        if run.reason:
            lines.append(f"Reason: {run.reason}")
        if run.failure_reason:
            lines.append(f"Failure: {run.failure_reason}")
        steps = _grid(
            ["#", "Service", "From → to", "State", "Queued", "Applying", "Settling", "Total"],
            [
                [
                    f"{step.position}·{step.group}",
                    f"{step.service}\n{step.backend}",
                    f"{step.from_version or '—'} → {step.target}",
                    step.state,
                    clock(step.queued),
                    clock(step.applying),
                    clock(step.settling),
                    clock(step.total),
                ]
                for step in run.steps
            ],
            [8 * mm, 34 * mm, 44 * mm, 22 * mm, 16 * mm, 19 * mm, 18 * mm, TEXT_WIDTH - 161 * mm],
            styles,
        )
        story += [
            CondPageBreak(40 * mm),
            _para(f"Run #{run.id}{tags}: {run.state_label}", styles["h2"]),
            _para("\n".join(lines), styles["body"]),
            Spacer(1, 3),
            steps,
            _para(
                "Step columns: position·group; queued is enqueued to claimed, applying is "
                "claimed to applied, settling is applied to done (rollout wait and checks).",
                styles["quiet"],
            ),
        ]

    shown = "every entry" if report.timeline_filter == "all" else "starred entries only"
    story += [
        Spacer(1, 6),
        _para(
            f"The timeline follows on its own pages: {len(report.timeline):,} of "
            f"{report.timeline_total:,} entries ({shown}); {report.starred_total:,} starred, "
            "marked ★ and shaded.",
            styles["quiet"],
        ),
        NextPageTemplate("timeline"),
        PageBreak(),
    ]
    story += _timeline_tables(report)
    if not report.timeline:
        story.append(_para("No entries to show.", styles["body"]))

    decorations = _Decorations(report)
    frame_height = PAGE_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    body = Frame(
        MARGIN_X,
        MARGIN_BOTTOM,
        TEXT_WIDTH,
        frame_height,
        id="body",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    timeline = Frame(
        MARGIN_X,
        MARGIN_BOTTOM,
        TEXT_WIDTH,
        frame_height - TIMELINE_HEADER_HEIGHT,
        id="timeline",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    buffer = BytesIO()
    document = BaseDocTemplate(
        buffer,
        pagesize=A4,
        title=report.title,
        author="Backout",
        subject=f"Incident #{incident.pk}",
        leftMargin=MARGIN_X,
        rightMargin=MARGIN_X,
        topMargin=MARGIN_TOP,
        bottomMargin=MARGIN_BOTTOM,
        initialFontName=REGULAR,
        pageTemplates=[
            PageTemplate(id="body", frames=[body], onPage=decorations.page),
            PageTemplate(id="timeline", frames=[timeline], onPage=decorations.timeline_page),
        ],
    )
    document.build(story, canvasmaker=_NumberedCanvas)
    return buffer.getvalue()
