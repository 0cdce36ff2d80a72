"""Markdown to roff (man macros), for the subset vnet's documentation is written in.

The manual pages take their prose from the Markdown under doc/ (config.md is
vnet.sxp(5)) and from tools/mantext.py, so a fact is written once and the pages
cannot drift from the documents.  Only what those files use is understood:

* `#`, `##`, `###` headings, paragraphs, `**bold**`, `` `code` `` (any number of
  backticks), `[text](target)` links, `<br>` line breaks;
* fenced code blocks (also inside list items);
* `*`/`-` and `1.` lists, one level, continued by indented lines;
* pipe tables, rendered as tagged paragraphs: the first cell is the tag, the others
  follow (with their column names when there are more than two columns), because a
  man page read at 80 columns has no room for tables of prose.

Anything else passes through as paragraph text, escaped, so it is never read as roff.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_FENCE = re.compile(r"^(\s*)```")
_ITEM = re.compile(r"^([*-]|\d+\.) +")
_HEADING = re.compile(r"^(#{1,6}) +(.*?)\s*$")
_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_BREAK = "\x00"  # a <br>, made a .br request only once the text is protected

# How a link to another document reads in a manual page: the page that holds it.
LinkText = Callable[[str, str], str]


def escape(text: str) -> str:
    """Text as roff prints it: backslashes and minus signs literal (so options can be
    copied), every non-ASCII character as a named glyph (groff reads ASCII input)."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in out)


def protect_lines(text: str) -> str:
    """Stop a line that starts with `.` or `'` from being read as a request."""
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def plain_link(text: str, target: str) -> str:
    """A link as its text: a man page cannot follow it."""
    return text


def inline(text: str, link: LinkText = plain_link) -> str:
    """One paragraph's text in roff: code and bold in bold, links as their text."""
    out: list[str] = []
    bold = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "`":
            ticks = len(text[i:]) - len(text[i:].lstrip("`"))
            end = text.find("`" * ticks, i + ticks)
            if end >= 0:
                code = text[i + ticks:end]
                if code.startswith(" ") and code.endswith(" ") and code.strip():
                    code = code[1:-1]
                out.append(escape(code) if bold else f"\\fB{escape(code)}\\fR")
                i = end + ticks
                continue
        elif text.startswith("**", i):
            bold = not bold
            out.append("\\fB" if bold else "\\fR")
            i += 2
            continue
        elif c == "[":
            m = _LINK.match(text, i)
            if m:
                out.append(inline(link(m.group(1), m.group(2)), link))
                i = m.end()
                continue
        elif text.startswith("<br>", i):
            out.append(_BREAK)
            i += 4
            continue
        out.append(escape(c))
        i += 1
    if bold:
        out.append("\\fR")
    return "\n.br\n".join(protect_lines(part.strip()) for part in "".join(out).split(_BREAK))


@dataclass
class _Block:
    kind: str  # "para", "code", "item" (one list item), "table", "heading"
    lines: list[str]
    level: int = 0


def _blocks(lines: list[str]) -> Iterator[_Block]:
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if _FENCE.match(line):
            indent = len(_FENCE.match(line).group(1))
            j = i + 1
            while j < len(lines) and not _FENCE.match(lines[j]):
                j += 1
            yield _Block("code", [_dedent(l, indent) for l in lines[i + 1:j]])
            i = j + 1
            continue
        heading = _HEADING.match(line)
        if heading:
            yield _Block("heading", [heading.group(2)], len(heading.group(1)))
            i += 1
            continue
        if line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            yield _Block("table", lines[i:j])
            i = j
            continue
        if _ITEM.match(line):
            j = i + 1
            while j < len(lines) and not _ITEM.match(lines[j]) and (
                    lines[j].startswith("  ") or (lines[j].strip() and not _starts_block(lines[j]))
                    or (not lines[j].strip() and j + 1 < len(lines) and lines[j + 1].startswith("  "))):
                j += 1
            yield _Block("item", lines[i:j])
            i = j
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() and not _starts_block(lines[j]):
            j += 1
        yield _Block("para", lines[i:j])
        i = j


def _dedent(line: str, width: int) -> str:
    """`line` without the `width` columns of indentation its block has."""
    return line[width:] if not line[:width].strip() else line.lstrip()


def _starts_block(line: str) -> bool:
    return bool(_FENCE.match(line) or _HEADING.match(line) or line.startswith("|") or _ITEM.match(line))


def _code(lines: list[str]) -> str:
    body = "\n".join(escape(l) for l in lines)
    return f".nf\n{protect_lines(body)}\n.fi"


def _cells(row: str) -> list[str]:
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(row)]


def _table(rows: list[str], link: LinkText) -> str:
    header = _cells(rows[0])
    out = []
    for row in rows[2:]:
        cells = _cells(row)
        body = []
        for name, cell in zip(header[1:], cells[1:]):
            text = inline(cell, link)
            body.append(f"{inline(name, link)}: {text}" if len(header) > 2 else text)
        out.append(".TP\n" + inline(cells[0], link) + "\n" + "\n.br\n".join(body))
    return "\n".join(out)


def _item(lines: list[str], link: LinkText) -> str:
    marker = _ITEM.match(lines[0])
    bullet = marker.group(1) in ("*", "-")
    width = marker.end()
    inner = [lines[0][width:]] + [_dedent(l, width) for l in lines[1:]]
    parts = [".IP \\(bu 2" if bullet else f".IP {marker.group(1)} 4"]
    for n, block in enumerate(_blocks(inner)):
        if block.kind == "item":  # a nested list, indented to this item's text
            parts += [".RS", _item(block.lines, link), ".RE"]
            continue
        if n:
            parts.append(".IP")
        if block.kind == "code":
            parts.append(_code(block.lines))
        else:
            parts.append(inline(" ".join(l.strip() for l in block.lines), link))
    return "\n".join(parts)


def render(markdown: str, link: LinkText = plain_link, section: Callable[[str, int], str] | None = None) -> str:
    """Markdown as roff.  `section(title, level)` makes the request for a heading;
    by default `##` is a section (.SH) and deeper ones are subsections (.SS)."""
    section = section or default_section
    out: list[str] = []
    for block in _blocks(markdown.split("\n")):
        if block.kind == "heading":
            request = section(block.lines[0], block.level)
            if request:
                out.append(request)
        elif block.kind == "code":
            out.append(f".PP\n.RS 4\n{_code(block.lines)}\n.RE")
        elif block.kind == "table":
            out.append(".PP\n" + _table(block.lines, link))
        elif block.kind == "item":
            out.append(_item(block.lines, link))
        else:
            out.append(".PP\n" + inline(" ".join(l.strip() for l in block.lines), link))
    return "\n".join(out) + "\n" if out else ""


def default_section(title: str, level: int) -> str:
    plain = inline(title)
    if level <= 2:
        return f'.SH "{plain.upper()}"'
    return f'.SS "{plain}"'


def extract(markdown: str, title: str) -> str:
    """The body of the section headed `title` (any level), up to the next heading of
    the same or a higher level; its own heading is left out."""
    lines = markdown.split("\n")
    start = level = None
    fence = False
    for n, line in enumerate(lines):
        fence ^= bool(_FENCE.match(line))
        m = None if fence else _HEADING.match(line)
        if m is None:
            continue
        if start is None and m.group(2) == title:
            start, level = n + 1, len(m.group(1))
        elif start is not None and len(m.group(1)) <= level:
            return "\n".join(lines[start:n])
    if start is None:
        raise KeyError(f"no section {title!r}")
    return "\n".join(lines[start:])
