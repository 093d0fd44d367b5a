"""The three exports: the same facts, every timeline entry in order, a documented schema."""

from __future__ import annotations

import io
import json
import re

import jsonschema
import pytest
from django.urls import reverse
from markdown_it import MarkdownIt
from pypdf import PdfReader

from incidents import services as incident_services
from postmortems import selectors, services
from postmortems.exports import render_json, render_markdown, render_pdf
from postmortems.exports.structured import schema
from tests.postmortems.builders import entries_of, finished_run, responder

pytestmark = pytest.mark.django_db


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def _export(client, incident, fmt: str, query: str = "") -> bytes:
    response = client.get(reverse(f"postmortem_{fmt}", args=[incident.pk]) + query)
    assert response.status_code == 200, response.content[:300]
    return response.content


@pytest.fixture
def written(ic, incident):
    """A post-mortem with every field written, one action item, a run, and 150 notes, some
    with characters that mean something in Markdown, HTML or PDF markup."""
    finished_run(incident)
    for number in range(150):
        incident_services.note_add(
            incident=incident, author=ic, body=f"marker-{number:04d} | <b>&amp; 5% ★ “q”"
        )
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    services.postmortem_edit(
        postmortem=postmortem,
        actor=ic,
        values={
            "root_cause": "A currency unit mismatch in v1.5.0",
            "prevention": "Contract tests between checkout and payments",
            "lessons_learned": "The flag kill switch was faster than a rollback",
            "users_affected": 4812,
            "failed_requests": 91234,
            "data_loss": "none",
        },
        base_revision=postmortem.revision,
    )
    services.action_item_add(
        postmortem=postmortem, actor=ic, title="Add payments contract tests", owner=responder()
    )
    return postmortem


def test_every_timeline_entry_appears_in_each_export_in_order(client, ic, incident, written):
    client.force_login(ic)
    entries = entries_of(incident)
    assert len(entries) > 150

    markdown = _export(client, incident, "md").decode()
    rows = [line for line in markdown.splitlines() if re.match(r"^\| \d+ \| \d{4}-", line)]
    assert [int(row.split(" | ")[0][2:]) for row in rows] == [entry.pk for entry in entries]

    document = json.loads(_export(client, incident, "json"))
    assert [e["id"] for e in document["timeline"]["entries"]] == [entry.pk for entry in entries]
    assert [e["body"] for e in document["timeline"]["entries"]] == [e.body for e in entries]

    text = _pdf_text(_export(client, incident, "pdf"))
    markers = [int(m) for m in re.findall(r"marker-(\d{4})", text)]
    assert markers == list(range(150))
    positions = [text.find(entry.body.split(" | ")[0]) for entry in entries]
    assert all(position >= 0 for position in positions)
    assert positions == sorted(positions)


def test_the_three_exports_carry_the_same_facts(client, ic, incident, written):
    client.force_login(ic)
    markdown = _export(client, incident, "md").decode()
    pdf = _pdf_text(_export(client, incident, "pdf"))
    document = json.loads(_export(client, incident, "json"))
    assert document["postmortem"]["root_cause"] == "A currency unit mismatch in v1.5.0"
    assert document["postmortem"]["impact"]["users_affected"] == 4812
    assert [m["seconds"] for m in document["metrics"]] == [180, 60, 360, 180, 840]
    assert document["action_items"][0]["title"] == "Add payments contract tests"
    for text in (markdown, " ".join(pdf.split())):
        assert "A currency unit mismatch in v1.5.0" in text
        assert "Contract tests between checkout and payments" in text
        assert "4,812" in text and "91,234" in text
        assert "Add payments contract tests" in text
        assert "Total recovery" in text and "14:00" in text
        assert "P1 — major feature broken" in text
        assert f"Run #{document['runs'][0]['id']}" in text


def test_json_export_follows_its_published_schema(client, ic, incident, written):
    client.force_login(ic)
    document = json.loads(_export(client, incident, "json"))
    jsonschema.validate(document, schema(), format_checker=jsonschema.FormatChecker())
    assert document["schema_version"] == 1


def test_schema_rejects_a_document_missing_the_timeline():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema_version": 1, "kind": "postmortem"}, schema())


def test_starred_view_exports_only_starred_entries(client, ic, incident, written):
    client.force_login(ic)
    starred = list(written.stars.order_by("entry_id").values_list("entry_id", flat=True))
    document = json.loads(_export(client, incident, "json", "?timeline=starred"))
    assert [e["id"] for e in document["timeline"]["entries"]] == starred
    assert document["timeline"]["total"] == len(entries_of(incident))
    markdown = _export(client, incident, "md", "?timeline=starred").decode()
    assert "marker-0001" not in markdown and "★ Status:" in markdown


def test_the_postmortem_choice_of_timeline_is_the_exports_default(client, ic, incident, written):
    services.postmortem_edit(
        postmortem=written, actor=ic, values={"timeline_filter": "starred"}, base_revision=0
    )
    client.force_login(ic)
    document = json.loads(_export(client, incident, "json"))
    assert document["timeline"]["filter"] == "starred"
    assert (
        json.loads(_export(client, incident, "json", "?timeline=all"))["timeline"]["filter"]
        == "all"
    )


def test_an_incident_without_a_postmortem_exports_its_record(client, ic, incident):
    client.force_login(ic)
    document = json.loads(_export(client, incident, "json"))
    jsonschema.validate(document, schema())
    assert document["postmortem"]["state"] == "not_started"
    assert len(document["timeline"]["entries"]) == len(entries_of(incident))
    assert "Not written yet." in _export(client, incident, "md").decode()
    assert _export(client, incident, "pdf").startswith(b"%PDF")


def test_a_drill_run_makes_a_drill_report_with_each_steps_timing(client, ic, incident):
    run = finished_run(incident, drill=True, steps=3)
    client.force_login(ic)
    document = json.loads(_export(client, incident, "json"))
    assert document["kind"] == "drill"
    [reported] = document["runs"]
    assert reported["id"] == run.pk and reported["drill"] is True
    assert reported["duration_seconds"] == 40 and reported["met"] is True
    assert [s["position"] for s in reported["steps"]] == [1, 2, 3]
    for step in reported["steps"]:
        assert (step["queued_seconds"], step["applying_seconds"]) == (2, 5)
        assert (step["settling_seconds"], step["total_seconds"]) == (30, 35)
    markdown = _export(client, incident, "md").decode()
    assert markdown.startswith("# Drill report: ")
    assert "| 1 | 1 | web" in markdown and "| 0:02 | 0:05 | 0:30 | 0:35 |" in markdown
    pdf = _pdf_text(_export(client, incident, "pdf"))
    assert "Drill report" in pdf and "0:35" in pdf


def test_markdown_table_cells_escape_pipes_and_keep_line_breaks(ic, incident):
    incident_services.note_add(incident=incident, author=ic, body="a | b\nsecond line")
    markdown = render_markdown(selectors.postmortem_report(incident.pk)).decode()
    assert "a \\| b<br>second line |" in markdown


ATTACKS = (
    "<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) "
    "![pixel](https://tracker.example/p.png) <a href='javascript:alert(4)'>a</a>"
)


def test_markdown_renders_no_html_or_link_from_what_people_typed(ic, incident):
    incident_services.note_add(incident=incident, author=ic, body=ATTACKS)
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    services.postmortem_edit(
        postmortem=postmortem,
        actor=ic,
        values={"root_cause": "**Bold** stays; " + ATTACKS},
        base_revision=postmortem.revision,
    )
    markdown = render_markdown(selectors.postmortem_report(incident.pk)).decode()
    rendered = MarkdownIt("commonmark").enable("table").render(markdown)

    assert "<script" not in rendered and '<img src="x"' not in rendered
    assert 'href="javascript' not in rendered and "<a href='javascript" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "<strong>Bold</strong> stays" in rendered  # the post-mortem's own Markdown
    timeline = rendered[rendered.index("<h2>Timeline</h2>") :]
    assert "<img" not in timeline and "<a " not in timeline  # a note's links are text
    assert "![pixel](https://tracker.example/p.png)" in timeline


def test_pdf_embeds_dejavu_when_the_system_has_it(ic, incident):
    from postmortems.exports.pdf_text import fonts_register

    reader = PdfReader(io.BytesIO(render_pdf(selectors.postmortem_report(incident.pk))))
    fonts = {
        str(font["/BaseFont"])
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    }
    expected = "DejaVuSans" if fonts_register().family == "DejaVuSans" else "Vera"
    assert any(expected in name for name in fonts)
    assert not any("Helvetica" in name for name in fonts)


def test_pdf_pages_are_numbered_out_of_the_total(ic, incident):
    for number in range(400):
        incident_services.note_add(incident=incident, author=ic, body=f"line {number}")
    reader = PdfReader(io.BytesIO(render_pdf(selectors.postmortem_report(incident.pk))))
    total = len(reader.pages)
    assert total > 3
    assert f"Page {total} of {total}" in reader.pages[-1].extract_text()
    assert f"Page 2 of {total}" in reader.pages[1].extract_text()


def test_pdf_wraps_a_word_too_long_for_its_column(ic, incident):
    digest = "sha256:" + "ab12" * 60
    incident_services.note_add(incident=incident, author=ic, body=f"image {digest} rolled")
    text = _pdf_text(render_pdf(selectors.postmortem_report(incident.pk)))
    assert digest in "".join(text.split())


def test_json_render_is_stable_for_the_same_record(ic, incident):
    report = selectors.postmortem_report(incident.pk)
    assert render_json(report) == render_json(report)


def test_an_unknown_timeline_choice_answers_400(client, ic, incident):
    client.force_login(ic)
    response = client.get(reverse("postmortem_json", args=[incident.pk]) + "?timeline=some")
    assert response.status_code == 400
    assert b"Timeline" in response.content


def test_the_report_reads_a_constant_number_of_queries(
    ic, incident, written, django_assert_max_num_queries
):
    for number in range(200):
        incident_services.note_add(incident=incident, author=ic, body=f"more {number}")
    with django_assert_max_num_queries(10):
        report = selectors.postmortem_report(incident.pk)
        render_json(report)
        render_markdown(report)


@pytest.mark.parametrize(
    "text",
    [
        "short",
        "words " * 80,
        "x" * 500,
        "line one\nline two with a https://example.com/" + "a" * 200 + " tail",
        "",
    ],
)
def test_wrapped_timeline_lines_fit_their_column_and_keep_every_character(text):
    from reportlab.pdfbase.pdfmetrics import stringWidth

    from postmortems.exports.pdf_text import REGULAR, fonts_register, wrap_text

    fonts_register()
    lines = wrap_text(text, REGULAR, 7.5, 100)
    assert all(stringWidth(line, REGULAR, 7.5) <= 100 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace("\n", "").replace(" ", "")


def test_rendering_reads_nothing_from_the_database(
    ic, incident, written, django_assert_num_queries
):
    # The export view renders outside Django's database thread.
    report = selectors.postmortem_report(incident.pk)
    with django_assert_num_queries(0):
        render_pdf(report)
        render_markdown(report)
        render_json(report)


def test_the_pdf_lays_out_everything_at_its_maximum_length(client, ic, incident):
    """A 5,000-character note (the form's maximum) once made a row taller than the page."""
    note = " ".join(f"word{number:04d}" for number in range(555))[:4990] + " LAST-WORD"
    assert len(note) <= 5000
    incident_services.note_add(incident=incident, author=ic, body=note)
    incident_services.note_add(incident=incident, author=ic, body="line\n" * 2400 + "END")
    incident_services.note_add(incident=incident, author=ic, body="x" * 5000)
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    long_text = ("Root cause paragraph, 結帳失敗. " * 400)[:9000]
    services.postmortem_edit(
        postmortem=postmortem,
        actor=ic,
        values={"root_cause": long_text, "data_loss": "none " * 300},
        base_revision=postmortem.revision,
    )
    services.action_item_add(postmortem=postmortem, actor=ic, title="T" * 300)

    client.force_login(ic)
    pdf = _pdf_text(_export(client, incident, "pdf"))

    assert "LAST-WORD" in pdf and "END" in pdf and "(continued)" in pdf
