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
    """(line number, object) for each non-blank line; a bad line is an `InputError` naming it."""
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        lineno = 0
        try:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}:{lineno + 1}: not UTF-8 text ({exc.reason})") from None


@dataclass(frozen=True)
class TextRecord:
    """A training-style record: what the model saw as context (chat turns) and as text to predict."""

    context: Prompt
    text: str
    line: int


def read_text_records(path: Path) -> list[TextRecord]:
    """`{"text": ...}` or `{"messages": [{"role", "content"}, ...]}` per line (one kind per file).

    For chat records the last turn is the text to predict and earlier turns are its context.
    """
    records: list[TextRecord] = []
    kinds: set[str] = set()
    for lineno, obj in iter_jsonl(path):
        if isinstance(obj.get("text"), str):
            kinds.add("text")
            records.append(TextRecord("", obj["text"], lineno))
        elif isinstance(obj.get("messages"), list) and obj["messages"]:
            kinds.add("messages")
            turns = []
            for i, turn in enumerate(obj["messages"]):
                if not (isinstance(turn, dict) and isinstance(turn.get("content"), str) and turn.get("role")):
                    raise InputError(f"{path}:{lineno}: messages[{i}] needs string fields `role` and `content`")
                turns.append((str(turn["role"]), turn["content"]))
            records.append(TextRecord(tuple(turns[:-1]), turns[-1][1], lineno))  # type: ignore[arg-type]
        else:
            raise InputError(f'{path}:{lineno}: expected a string field "text" or a non-empty list "messages"')
        if len(kinds) > 1:
            raise InputError(f"{path}:{lineno}: mixes `text` and `messages` records; use one kind per file")
    if not records:
        raise InputError(f"{path}: no records (the file is empty)")
    return records
