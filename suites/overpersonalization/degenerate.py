"""Degenerate generations: repetition loops ("As a As a As a ...") and empty answers, which mention nothing and so
would give a clean `op_rate` that the subject did not earn.

An answer is degenerate when it is empty, or when at least `LOOP_SHARE` of its word 4-grams are repeats
(seq-rep-4 of Welleck et al. 2020, "Neural text generation with unlikelihood training": 1 − distinct 4-grams /
4-grams; human text scores about 0.01, greedy loops near 1). Answers of fewer than `MIN_WORDS` words are judged on
character 8-grams when they are at least `MIN_CHARS` long (a loop without spaces), else never degenerate.
A subject whose share of degenerate answers reaches `SUBJECT_SHARE` gets no generation metrics (see the README).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+")
N_WORDS, N_CHARS = 4, 8
MIN_WORDS, MIN_CHARS = 8, 24
#: a single answer: half its 4-grams repeat earlier ones (a loop from the middle of the answer on)
LOOP_SHARE = 0.5
#: a subject: half its answers are degenerate, so its mention rates could be at most half of what they would be
SUBJECT_SHARE = 0.5


def repetition(units: Sequence[str], n: int) -> float:
    """seq-rep-n: the share of the n-grams of `units` that repeat an earlier one (0 when there are none)."""
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def degenerate_reason(text: str) -> str | None:
    """Why `text` is degenerate ("empty", "repetition loop"), or None when it is not."""
    if not text.strip():
        return "empty"
    words = _WORD.findall(text.lower())
    if len(words) >= MIN_WORDS:
        share = repetition(words, N_WORDS)
    else:
        chars = "".join(text.split())
        share = repetition(list(chars), N_CHARS) if len(chars) >= MIN_CHARS else 0.0
    return "repetition loop" if share >= LOOP_SHARE else None
