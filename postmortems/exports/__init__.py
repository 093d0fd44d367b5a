"""Three renderings of one PostmortemReport: Markdown, PDF and JSON. They carry the same
facts; only the form differs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from postmortems.exports.markdown import render_markdown
from postmortems.exports.pdf import render_pdf
from postmortems.exports.structured import render_json
from postmortems.selectors import PostmortemReport


@dataclass(frozen=True)
class ExportFormat:
    content_type: str
    render: Callable[[PostmortemReport], bytes]


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "md": ExportFormat("text/markdown; charset=utf-8", render_markdown),
    "pdf": ExportFormat("application/pdf", render_pdf),
    "json": ExportFormat("application/json", render_json),
}

__all__ = ["EXPORT_FORMATS", "ExportFormat", "render_json", "render_markdown", "render_pdf"]
