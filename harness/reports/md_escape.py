"""One escaping helper for every user- or model-controlled string that lands in a Markdown output.

Item domains, tag values, subject names, metric keys built from data, notes that quote data or model output,
gate reasons: any of them may hold `|` (a new table cell), a newline (a new block: a heading, a list, a
table row), raw HTML (`<script>`, `<img onerror>`) or link syntax (`[x](javascript:...)`). `md_text` makes
such a string inert text on one line; `md_code` makes it an inline code span that is safe inside a table.
"""

from __future__ import annotations

import re

_NEWLINES = re.compile(r"[\r\n\u2028\u2029\x0b\x0c]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
#: Characters with a meaning in CommonMark/GFM inline syntax, backslash-escaped by `md_text`.
_SPECIAL = re.compile(r"([\\`*\[\]|~])")
#: What opens a block at the start of a line (heading, quote, list item, ordered item).
_BLOCK_START = re.compile(r"^(\s*)([#>+\-=]|\d+[.)])")


def _one_line(text: str) -> str:
    return _CONTROL.sub("", _NEWLINES.sub(" ", str(text)))


def md_text(text: object) -> str:
    """`text` as plain Markdown text on one line: HTML entities for `&`, `<`, `>`, a backslash before every character
    that could start a link, image, code span, `*` emphasis, strikethrough or table cell, and before a marker that
    would open a block at its start. Underscores stay (snake_case keys read as they are; `_x_` is only emphasis)."""
    flat = _one_line(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = _SPECIAL.sub(r"\\\1", flat)
    return _BLOCK_START.sub(_escape_block_start, escaped, count=1)


def _escape_block_start(match: re.Match[str]) -> str:
    marker = match.group(2)
    if marker[0].isdigit():  # "1." opens an ordered list: escape its punctuation, "1\."
        return match.group(1) + marker[:-1] + "\\" + marker[-1]
    return match.group(1) + "\\" + marker


def md_code(text: object) -> str:
    """`text` as an inline code span on one line, safe in a table cell: `|` escaped (GFM splits cells on it even
    in code), fenced by more backticks than any run inside it."""
    flat = _one_line(str(text)).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"
