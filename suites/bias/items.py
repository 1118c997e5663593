"""Bias items as plain data: decision items (one prompt per group of a template) and stereotype minimal pairs.

Both the shipped files and a user's `items_file`/`pairs_file` use the formats documented in the README
("### bias"); the published benchmarks (BBQ, CrowS-Pairs, Discrim-Eval) are read by `loaders`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.data import iter_jsonl
from harness.errors import InputError
from harness.requests import Prompt

DATA_DIR = Path(__file__).parent / "data"
SHIPPED_ITEMS = DATA_DIR / "decisions.jsonl"
SHIPPED_PAIRS = DATA_DIR / "stereotype_pairs.jsonl"
ANSWERS = {"yes": " yes", "no": " no"}  # after a plain prompt; a chat answer has no leading space


def as_prompt(text: str, prompt_format: str) -> Prompt:
    """An item's text as the model gets it: as written with `prompt_format = "plain"` (no role wrapper, so a base
    model sees the item's own wording), one user turn for "chat" (the engine applies the chat template)."""
    return (("user", text),) if prompt_format == "chat" else text


def as_answer(text: str, prompt_format: str) -> str:
    """An answer option as the continuation to score: after a space in plain text, as the turn's start in chat."""
    return text.lstrip() if prompt_format == "chat" else " " + text.lstrip()

Groups = tuple[tuple[str, str], ...]  # (attribute, group) pairs


@dataclass(frozen=True)
class DecisionItem:
    """One decision prompt; `groups` are the (attribute, group) cells it belongs to, `context` the exact values
    that must match for two items to be counterfactuals of each other (beyond the template and attribute)."""

    template_id: str
    scenario: str
    prompt: str
    groups: Groups
    favorable: str = "yes"
    label: int | None = None
    context: Groups = ()

    def counterfactual_key(self, attribute: str) -> tuple[str, str, Groups]:
        """Items sharing this key differ only in `attribute` (the unit of the flip rate)."""
        return self.template_id, attribute, tuple(kv for kv in self.context if kv[0] != attribute)


@dataclass(frozen=True)
class StereotypePair:
    """A minimal pair: a stereotypical sentence and the same sentence about another group."""

    template_id: str
    attribute: str
    stereotype: str
    anti_stereotype: str


def _field(path: Path, line: int, obj: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    value = obj.get(name)
    if value is None or not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{path}:{line}: `{name}` is missing or not a non-empty {getattr(kind, '__name__', kind)}")
    return value


def _label(path: Path, line: int, value: Any) -> int | None:
    if value is None:
        return None
    if value in (0, 1) and not isinstance(value, float | str):
        return int(value)
    raise InputError(f"{path}:{line}: `label` must be 0, 1 or absent (got {value!r})")


def read_decision_items(path: Path) -> list[DecisionItem]:
    """`{template_id, scenario, attribute, group, prompt, favorable: "yes", label?}` per line."""
    items = []
    for line, obj in iter_jsonl(path):
        favorable = obj.get("favorable", "yes")
        if favorable not in ANSWERS:
            raise InputError(f"{path}:{line}: `favorable` must be \"yes\" or \"no\" (got {favorable!r})")
        template = _field(path, line, obj, "template_id", (str, int))
        attribute, group = _field(path, line, obj, "attribute"), _field(path, line, obj, "group")
        prompt = _field(path, line, obj, "prompt")
        items.append(DecisionItem(
            template_id=str(template), scenario=str(obj.get("scenario") or ""), prompt=prompt,
            groups=((attribute, group),), favorable=favorable, label=_label(path, line, obj.get("label"))))
    if not items:
        raise InputError(f"{path}: no decision items")
    return items


def read_stereotype_pairs(path: Path) -> list[StereotypePair]:
    """`{template_id, attribute, stereotype, anti_stereotype, stereotyped_group?, other_group?}` per line."""
    pairs = [
        StereotypePair(str(_field(path, line, obj, "template_id", (str, int))), _field(path, line, obj, "attribute"),
                       _field(path, line, obj, "stereotype"), _field(path, line, obj, "anti_stereotype"))
        for line, obj in iter_jsonl(path)
    ]
    if not pairs:
        raise InputError(f"{path}: no stereotype pairs")
    return pairs


T = TypeVar("T")


def first_templates(items: Sequence[T], n: int | None, template: Callable[[T], str]) -> list[T]:
    """The items of the first `n` distinct templates, in file order (all of them when `n` is None)."""
    if n is None:
        return list(items)
    keep: set[str] = set()
    for item in items:
        if len(keep) >= n:
            break
        keep.add(template(item))
    return [item for item in items if template(item) in keep]
