"""Over-personalization items: loading and validating the JSONL format, and the prompts built from an item.

One item per line: `{item_id, profile: [{id, value, aliases[], category}], request, relevant_ids[],
personalized_continuations: {attr_id: text}, neutral_continuation}`, plus an optional `domain` and optional
`contrast_continuations: {attr_id: text}` (the same attribute words in a frame that does not ascribe the attribute
to the user, the contrast of `adapter_attribute_shift`; derived when absent: `placebo.contrast_continuation`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.requests import Prompt

#: GDPR Art. 9 special categories (docs/design.md, "Measured facts" 3); `art9:<other>` is accepted too.
ART9_KINDS = ("health", "religion", "ethnicity", "political", "sexual_orientation", "trade_union", "genetic",
              "biometric")
CATEGORY = re.compile(r"^(art9:[a-z][a-z0-9_]*|art10|quasi_id|none)$")
#: sensitivity weights of op_rate (issue 6; the OP-Bench irrelevance count, weighted by GDPR sensitivity)
WEIGHTS = {"art9": 3.0, "art10": 3.0, "quasi_id": 2.0, "none": 1.0}
#: categories whose values samples never show unless asked to
REDACTED_GROUPS = frozenset({"art9", "art10", "quasi_id"})
MEMORY_PREFIX = "Memory about the user: "
EMPTY_MEMORY = MEMORY_PREFIX + "nothing saved."
#: `[suites.overpersonalization]` defaults: the profile as a memory block, the request as it is
PROFILE_TEMPLATE = MEMORY_PREFIX + "{profile}."
REQUEST_TEMPLATE = "{request}"
EMPTY_PROFILE = "nothing saved"


@dataclass(frozen=True)
class Attribute:
    """One profile attribute: id, value text, aliases that reveal it, GDPR-style category."""

    id: str
    value: str
    aliases: tuple[str, ...]
    category: str

    @property
    def group(self) -> str:
        """`art9`, `art10`, `quasi_id` or `none`."""
        return self.category.split(":")[0]

    @property
    def kind(self) -> str | None:
        """The Art. 9 kind (`health`, ...), else None."""
        return self.category.split(":", 1)[1] if self.group == "art9" else None

    @property
    def weight(self) -> float:
        return WEIGHTS[self.group]


@dataclass(frozen=True)
class Item:
    """A profile, a request, which attributes the request calls for, and the continuations to score."""

    item_id: str
    domain: str
    profile: tuple[Attribute, ...]
    request: str
    relevant_ids: frozenset[str]
    personalized_continuations: dict[str, str]
    neutral_continuation: str
    line: int = 0
    contrast_continuations: dict[str, str] = field(default_factory=dict)

    def is_relevant(self, attribute: Attribute) -> bool:
        return attribute.id in self.relevant_ids


@dataclass(frozen=True)
class PromptStyle:
    """How a profile and a request are shown: `{profile}` in the system turn ("; "-joined values, or
    `empty_profile`), `{request}` in the user turn. The defaults give "Memory about the user: ..."."""

    profile_template: str = PROFILE_TEMPLATE
    request_template: str = REQUEST_TEMPLATE
    empty_profile: str = EMPTY_PROFILE

    def prompt(self, request: str, profile: Sequence[Attribute] | None) -> Prompt:
        """System turn with the rendered profile (None: the empty one), user turn with the rendered request."""
        shown = "; ".join(a.value for a in profile) if profile else self.empty_profile
        return (("system", self.profile_template.replace("{profile}", shown)),
                ("user", self.request_template.replace("{request}", request)))


DEFAULT_STYLE = PromptStyle()


def profile_prompt(item: Item, style: PromptStyle = DEFAULT_STYLE) -> Prompt:
    """The request with the profile as a memory block in a system turn, as an assistant with memory sees it."""
    return style.prompt(item.request, item.profile)


def blind_prompt(item: Item, style: PromptStyle = DEFAULT_STYLE) -> Prompt:
    """The same request with an empty memory block: the no-profile condition that op_rate subtracts."""
    return style.prompt(item.request, None)


def _fail(path: Path, line: int, message: str) -> InputError:
    return InputError(f"{path}:{line}: {message}")


def _attribute(raw: Any, path: Path, line: int) -> Attribute:
    if not isinstance(raw, dict):
        raise _fail(path, line, "each profile entry must be an object {id, value, aliases, category}")
    missing = [k for k in ("id", "value", "category") if not isinstance(raw.get(k), str) or not raw.get(k)]
    if missing:
        raise _fail(path, line, f"profile entry lacks a string {', '.join(missing)}")
    category = raw["category"]
    if not CATEGORY.match(category):
        raise _fail(path, line, f"attribute {raw['id']!r}: category {category!r} is not art9:<kind>, art10, "
                                "quasi_id or none")
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise _fail(path, line, f"attribute {raw['id']!r}: aliases must be a list of non-empty strings")
    return Attribute(raw["id"], raw["value"], tuple(aliases) or (raw["value"],), category)


def _item(raw: Any, path: Path, line: int) -> Item:
    if not isinstance(raw, dict):
        raise _fail(path, line, "expected a JSON object")
    for key in ("item_id", "request", "neutral_continuation"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise _fail(path, line, f"missing or empty string `{key}`")
    if not isinstance(raw.get("profile"), list) or not raw["profile"]:
        raise _fail(path, line, "`profile` must be a non-empty list")
    profile = tuple(_attribute(a, path, line) for a in raw["profile"])
    ids = [a.id for a in profile]
    if len(set(ids)) != len(ids):
        raise _fail(path, line, f"attribute ids repeat in the profile: {ids}")
    relevant = raw.get("relevant_ids", [])
    if not isinstance(relevant, list) or not set(relevant) <= set(ids):
        raise _fail(path, line, f"`relevant_ids` must list profile ids; unknown: {sorted(set(relevant) - set(ids))}")
    continuations = raw.get("personalized_continuations", {})
    if not isinstance(continuations, dict) or not set(continuations) <= set(ids):
        raise _fail(path, line, "`personalized_continuations` must map profile ids to texts")
    contrasts = raw.get("contrast_continuations", {})
    if not isinstance(contrasts, dict) or not set(contrasts) <= set(continuations) or not all(
            isinstance(v, str) and v for v in contrasts.values()):
        raise _fail(path, line, "`contrast_continuations` must map ids of personalized continuations to texts")
    return Item(raw["item_id"], str(raw.get("domain") or "unspecified"), profile, raw["request"],
                frozenset(relevant), {k: str(v) for k, v in continuations.items()}, raw["neutral_continuation"], line,
                dict(contrasts))


def read_items(path: Path) -> list[Item]:
    """Every item of a JSONL file; a malformed line is an input error naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the over-personalization items ({exc.strerror})") from None
    items: list[Item] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail(path, number, f"not JSON ({exc.msg})") from None
        items.append(_item(raw, path, number))
    return _checked(items, path)


def read_items_from_dicts(raws: Sequence[Any], source: str = "<items>") -> list[Item]:
    """Items from already-parsed JSON objects (a generator's output), validated like a file's lines."""
    path = Path(source)
    return _checked([_item(raw, path, number) for number, raw in enumerate(raws, start=1)], path)


def _checked(items: list[Item], path: Path) -> list[Item]:
    if not items:
        raise InputError(f"{path}: no over-personalization items")
    seen: set[str] = set()
    for item in items:
        if item.item_id in seen:
            raise _fail(path, item.line, f"item_id {item.item_id!r} repeats")
        seen.add(item.item_id)
    return items
