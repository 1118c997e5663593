"""Readers for published bias benchmarks a user already has on disk (their data is not shipped).

- BBQ (Parrish et al. 2022; github.com/nyu-mll/BBQ `data/*.jsonl`): multiple-choice questions in ambiguous and
  disambiguated contexts;
- CrowS-Pairs (Nangia et al. 2020; `crows_pairs_anonymized.csv`): sentence pairs, `sent_more`/`sent_less`;
- Discrim-Eval (Tamkin et al. 2023; `explicit.jsonl`/`implicit.jsonl`): decision questions × age, gender, race.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import iter_jsonl
from harness.errors import InputError
from suites.bias.items import DecisionItem, StereotypePair

#: Discrim-Eval's instruction after each filled template (Tamkin et al. 2023, appendix: prompt format)
DISCRIM_EVAL_SUFFIX = '\n\nPlease answer the above question with either "yes" or "no".'
DISCRIM_EVAL_ATTRIBUTES = ("age", "gender", "race")


@dataclass(frozen=True)
class BBQExample:
    """One BBQ question with three options; `biased` are the options that would express the targeted bias."""

    template_id: str  # category/question_index: the examples one hand-written template produced
    context: str
    question: str
    answers: tuple[str, str, str]
    label: int
    ambiguous: bool
    unknown: int  # index of the "can't be determined" option
    biased: frozenset[int]

    @property
    def text(self) -> str:
        """The context and question, the text an answer option continues."""
        return f"{self.context} {self.question}"


def _need(path: Path, line: int, obj: dict[str, Any], name: str) -> Any:
    if obj.get(name) is None:
        raise InputError(f"{path}:{line}: BBQ record lacks `{name}`")
    return obj[name]


def _groups_of(info: list[Any]) -> set[str]:
    """An option's group tags from `answer_info` (e.g. ['grandfather', 'old'], ['Black', 'F-Black'])."""
    tags: set[str] = set()
    for part in (str(p).lower().replace(" ", "") for p in info if p):
        tags |= {part, *re.split(r"[-_]", part)}
    if tags & {"woman", "women", "girl", "female"}:
        tags.add("f")
    if tags & {"man", "men", "boy", "male"}:
        tags.add("m")
    return tags


def read_bbq(path: Path) -> list[BBQExample]:
    """BBQ's jsonl: context, question, ans0-2, label, context_condition, question_polarity, answer_info,
    additional_metadata.stereotyped_groups (category and question_index group examples into templates)."""
    examples = []
    for line, obj in iter_jsonl(path):
        answers = tuple(str(_need(path, line, obj, f"ans{i}")) for i in range(3))
        info = _need(path, line, obj, "answer_info")
        meta = _need(path, line, obj, "additional_metadata")
        condition = _need(path, line, obj, "context_condition")
        polarity = obj.get("question_polarity", "neg")
        label = _need(path, line, obj, "label")
        if condition not in ("ambig", "disambig") or polarity not in ("neg", "nonneg") or label not in (0, 1, 2):
            raise InputError(f"{path}:{line}: expected context_condition ambig|disambig, question_polarity "
                             f"neg|nonneg and label 0-2 (got {condition!r}, {polarity!r}, {label!r})")
        tags = [_groups_of(info.get(f"ans{i}") or []) for i in range(3)]
        unknown = [i for i in range(3) if "unknown" in tags[i]]
        if len(unknown) != 1:
            raise InputError(f"{path}:{line}: answer_info should mark exactly one option 'unknown'")
        stereotyped = {str(g).lower().replace(" ", "") for g in meta.get("stereotyped_groups") or []}
        targets = {i for i in range(3) if i != unknown[0] and tags[i] & stereotyped}
        # a biased answer names the stereotyped group for a negative question, the other group for a non-negative
        biased = targets if polarity == "neg" else ({0, 1, 2} - targets - {unknown[0]} if targets else set())
        template = f"{obj.get('category', '')}/{obj.get('question_index', obj.get('example_id', line))}"
        examples.append(BBQExample(template, str(_need(path, line, obj, "context")),
                                   str(_need(path, line, obj, "question")), answers, int(label),
                                   condition == "ambig", unknown[0], frozenset(biased)))
    if not examples:
        raise InputError(f"{path}: no BBQ examples")
    return examples


CROWS_COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


def read_crows_pairs(path: Path) -> list[StereotypePair]:
    """CrowS-Pairs' csv; the stereotypical sentence is `sent_more` for "stereo" rows, `sent_less` for
    "antistereo" rows (Nangia et al. 2020's metric.py); every pair is its own cluster."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in CROWS_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: not a CrowS-Pairs csv: missing column(s) {', '.join(missing)}")
            pairs = []
            for line, row in enumerate(reader, start=2):
                direction = row["stereo_antistereo"]
                if direction not in ("stereo", "antistereo") or not row["sent_more"] or not row["sent_less"]:
                    raise InputError(f"{path}:{line}: expected sentences and stereo_antistereo stereo|antistereo")
                stereo, anti = ((row["sent_more"], row["sent_less"]) if direction == "stereo"
                                else (row["sent_less"], row["sent_more"]))
                pairs.append(StereotypePair(str(line), row["bias_type"] or "unknown", stereo, anti))
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if not pairs:
        raise InputError(f"{path}: no CrowS-Pairs rows")
    return pairs


def age_band(age: float) -> str:
    """Discrim-Eval's ages (20-100) in three bands, so each group has enough decisions per question."""
    return "20-39" if age < 40 else "40-59" if age < 60 else "60+"


def read_discrim_eval(path: Path) -> list[DecisionItem]:
    """Discrim-Eval's jsonl: filled_template, decision_question_id, age, gender, race (fill_type optional).

    Groups: age band, gender, race; counterfactuals keep the exact other attributes (and the exact age)."""
    items = []
    for line, obj in iter_jsonl(path):
        for name in ("filled_template", "decision_question_id", *DISCRIM_EVAL_ATTRIBUTES):
            if obj.get(name) is None:
                raise InputError(f"{path}:{line}: Discrim-Eval record lacks `{name}`")
        try:
            age = float(obj["age"])
        except (TypeError, ValueError):
            raise InputError(f"{path}:{line}: `age` is not a number ({obj['age']!r})") from None
        fill = str(obj.get("fill_type") or "")
        exact = (("age", f"{age:g}"), ("gender", str(obj["gender"])), ("race", str(obj["race"])))
        items.append(DecisionItem(
            template_id=f"{obj['decision_question_id']}{'/' + fill if fill else ''}", scenario=fill or "discrim_eval",
            prompt=str(obj["filled_template"]).strip() + DISCRIM_EVAL_SUFFIX,
            groups=(("age", age_band(age)), exact[1], exact[2]), context=exact))
    if not items:
        raise InputError(f"{path}: no Discrim-Eval records")
    return items
