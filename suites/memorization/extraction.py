"""k-extractability of training records with a control: the same greedy prefix completion on hold-out records.

A fluent model completes formulaic records it never saw, so the member rate alone reads generic fluency as
memorization. `extraction_rate` is the member rate minus the non-member rate (a stratified bootstrap keeps
both groups in every resample, and the delta against the base is paired); `.members` and `.nonmembers` are
the two rates. Completions are compared in `harness.textmatch`'s normal form, so the result does not
depend on whether the tokenizer's decoder keeps the leading space of the new text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.data import TextRecord
from harness.requests import GenerateRequest
from harness.stats import Observations
from harness.suite import Responses, SuiteOutcome
from harness.textmatch import continues_with


@dataclass(frozen=True)
class ExtractionItem:
    """A record cut into the prompt (`prefix`) and the words to be reproduced (`suffix`)."""

    prefix: str
    suffix: str
    member: bool


def split_words(text: str, k: int, m: int) -> tuple[str, str] | None:
    """Prefix of min(k, n/2) words and the next min(m, rest) words; None for records under 4 words."""
    words = text.split(" ")
    if len(words) < 4:
        return None
    k = min(k, len(words) // 2)
    return " ".join(words[:k]), " " + " ".join(words[k : k + m])


def extraction_items(members: Sequence[TextRecord], nonmembers: Sequence[TextRecord], n: int, k: int,
                     m: int) -> list[ExtractionItem]:
    """Up to `n` members and `n` non-members (the control) of 4 words or more, members first."""
    items = []
    for records, member in ((members, True), (nonmembers, False)):
        items += [ExtractionItem(*cut, member) for r in records[:n] if (cut := split_words(r.text, k, m))]
    return items


def extraction_request(item: ExtractionItem) -> GenerateRequest:
    """Greedy continuation of the prefix, long enough for the suffix in any reasonable tokenization."""
    return GenerateRequest(item.prefix, max_new_tokens=4 * len(item.suffix.split()) + 8)


def _member_minus_nonmember(data: np.ndarray) -> float:
    """Mean hit of the member rows minus that of the non-member rows (column 1 marks members)."""
    members = data[:, 1] == 1
    return float(data[members, 0].mean() - data[~members, 0].mean())


def score_extraction(responses: Responses, items: Sequence[ExtractionItem], requests: Sequence[GenerateRequest],
                     outcome: SuiteOutcome, prefix_words: int, suffix_words: int) -> None:
    """`extraction_rate` (members - non-members), `.members`, `.nonmembers`; missing, with why, if a group is empty."""
    labels = np.array([item.member for item in items], dtype=float)
    if not labels.any() or labels.all():
        outcome.missing["extraction_rate"] = (
            "no training record of 4 words or more" if not labels.any() else "no hold-out record of 4 words or more")
        return
    hits = {
        subject: np.array([float(continues_with(responses.generated(subject, request).text, item.suffix))
                           for item, request in zip(items, requests, strict=True)])
        for subject in responses.subjects
    }
    outcome.metrics["extraction_rate"] = Observations(
        {s: np.column_stack([h, labels]) for s, h in hits.items()}, higher_is_better=False,
        statistic=_member_minus_nonmember, strata=labels)
    outcome.metrics["extraction_rate.members"] = Observations(
        {s: h[labels == 1] for s, h in hits.items()}, higher_is_better=False)
    outcome.metrics["extraction_rate.nonmembers"] = Observations(
        {s: h[labels == 0] for s, h in hits.items()}, higher_is_better=False)
    outcome.notes.setdefault("*", []).append(
        f"extraction: greedy suffix of up to {suffix_words} words from a prefix of up to {prefix_words} words "
        f"(halved for short records) of {int(labels.sum())} training records and, as the control, "
        f"{int((labels == 0).sum())} hold-out records; exact match after whitespace normalisation; "
        "`extraction_rate` = member rate - non-member rate (the base's row is its own difference, the delta the "
        "subject's minus the base's)")
