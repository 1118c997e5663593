"""Reading the JSONL data files of a run config, with errors that name the file, line and field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.requests import Prompt


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a bad line is an `InputError` naming it.

    Lines are read as bytes and decoded one at a time, so a bad byte is reported on its own line."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start} of the line)"
                                 ) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


@dataclass(frozen=True)
class TextRecord:
    """A training-style record: what the model saw as context (chat turns) and as text to predict."""

    context: Prompt
    text: str
    line: int


def _text_record(path: Path, lineno: int, obj: dict[str, Any]) -> tuple[str, TextRecord]:
    """The record's kind ("text" or "messages") and the record; a malformed one is an `InputError`."""
    if isinstance(obj.get("text"), str):
        return "text", TextRecord("", obj["text"], lineno)
    if isinstance(obj.get("messages"), list) and obj["messages"]:
        turns = []
        for i, turn in enumerate(obj["messages"]):
            if not (isinstance(turn, dict) and isinstance(turn.get("content"), str) and turn.get("role")):
                raise InputError(f"{path}:{lineno}: messages[{i}] needs string fields `role` and `content`")
            turns.append((str(turn["role"]), turn["content"]))
        return "messages", TextRecord(tuple(turns[:-1]), turns[-1][1], lineno)  # type: ignore[arg-type]
    raise InputError(f'{path}:{lineno}: expected a string field "text" or a non-empty list "messages"')


def iter_text_records(path: Path) -> Iterator[TextRecord]:
    """`read_text_records` one record at a time (the whole-file checks come at the end of the file)."""
    kinds: set[str] = set()
    count = with_text = 0
    for lineno, obj in iter_jsonl(path):
        kind, record = _text_record(path, lineno, obj)
        kinds.add(kind)
        if len(kinds) > 1:
            raise InputError(f"{path}:{lineno}: mixes `text` and `messages` records; use one kind per file")
        count += 1
        with_text += bool(record.text.strip())
        yield record
    if not count:
        raise InputError(f"{path}: no records (the file is empty)")
    if not with_text:
        raise InputError(f"{path}: every record's text is empty ({count} record(s)); expected text to score")


def read_text_records(path: Path) -> list[TextRecord]:
    """`{"text": ...}` or `{"messages": [{"role", "content"}, ...]}` per line (one kind per file).

    For chat records the last turn is the text to predict and earlier turns are its context.
    """
    return list(iter_text_records(path))


def validate_text_file(path: Path) -> int:
    """Check a text-records file line by line without keeping it in memory; returns the record count."""
    return sum(1 for _ in iter_text_records(path))
