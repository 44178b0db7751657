"""Schedules and diaries as operators read them in the admin: a schedule's markdown table as an
HTML table, a diary's text as paragraphs, what they were generated from as indented JSON.
Everything is escaped; nothing here trusts the LLM's text."""

from __future__ import annotations

import json
from typing import Any

from django.utils.html import format_html, format_html_join, linebreaks
from django.utils.safestring import SafeString, mark_safe

TABLE_STYLE = "border-collapse: collapse"
CELL_STYLE = "border: 1px solid var(--hairline-color); padding: 2px 6px; vertical-align: top"


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _is_rule(cells: list[str]) -> bool:
    return all(cell and set(cell) <= set("-: ") for cell in cells)


def _table(rows: list[list[str]]) -> SafeString:
    header, *body = rows
    if body and _is_rule(body[0]):
        body = body[1:]
    else:  # no rule under the first row: all of them are data
        header, body = [], rows
    head = format_html_join("", '<th style="{}">{}</th>', ((CELL_STYLE, cell) for cell in header))
    lines = [
        format_html(
            "<tr>{}</tr>",
            format_html_join("", '<td style="{}">{}</td>', ((CELL_STYLE, c) for c in row)),
        )
        for row in body
    ]
    return format_html(
        '<table class="rendered" style="{}">{}<tbody>{}</tbody></table>',
        TABLE_STYLE,
        format_html("<thead><tr>{}</tr></thead>", head) if header else "",
        mark_safe("".join(lines)),  # each line is format_html's
    )


def markdown_tables(text: str) -> SafeString:
    """`text` with each run of `| ... |` lines as a table and the rest as paragraphs."""
    parts: list[SafeString] = []
    rows: list[list[str]] = []
    prose: list[str] = []

    def flush() -> None:
        if rows:
            parts.append(_table(rows))
            rows.clear()
        if "".join(prose).strip():
            parts.append(mark_safe(linebreaks("\n".join(prose), autoescape=True)))
        prose.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            if prose:
                flush()
            rows.append(_cells(line))
        else:
            if rows:
                flush()
            prose.append(line)
    flush()
    return mark_safe("".join(parts))  # each part is escaped above


def paragraphs(text: str) -> SafeString:
    """Prose with its paragraphs and line breaks, escaped (`autoescape`)."""
    return mark_safe(linebreaks(text, autoescape=True))


def pretty_json(value: Any) -> SafeString:
    """A JSON value indented, Japanese left readable."""
    if not value:
        return format_html("{}", "-")
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, ensure_ascii=False, indent=2),
    )
