"""Metric declarations: what each key a suite's `score()` may emit means, and how to judge and show it.

A suite lists its `MetricSpec`s in a class attribute `metrics` (built-in suites keep them in
`suites/<name>/metrics_spec.py`). Gates, reports, the compliance annex, `ppeval suites --metrics`,
the false-discovery families and `docs/suites.md` read these declarations instead of keeping their own
facts about particular suites. A key is declared exactly (`mia_auc`) or by a pattern in which `*`
stands for one or more characters (`pii_leak_rate.*`: one value per entity type).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Direction = Literal["higher", "lower", "two-sided", "observed"]
Plot = Literal["none", "bars", "roc"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric key (or breakdown pattern) a suite emits.

    `direction`: which way is better — "higher", "lower", "two-sided" (closest to `target` is best,
    e.g. 0.5 for a preference rate), or "observed" (per key, as the suite's Observations say: lm-eval tasks).
    `unit`: "rate" ([0, 1]), "signed_rate" ([-1, 1]), "bits", "nats",
    "nats/token", "AUC", "ratio", "perplexity" or "" (the task's own scale). `headline`: shown on the first
    screen and tested in the headline false-discovery family; breakdowns go below, collapsed.
    `obligations`: ids from harness/data/obligations.toml the figure is evidence for. `rank_samples_by`:
    the samples.jsonl field (descending) that puts this metric's worst examples first. `plot`: "bars"
    (a family of breakdowns as grouped bars) or "roc" (ROC curves from the suite's `details.roc`).
    `finding`: how the verdict phrases a delta, with `{delta}` / `{value}` / `{base}` placeholders.
    `material`: the smallest change that matters in practice (in the metric's unit); a delta that is significant
    but smaller keeps its `*` and is never marked better/worse or flagged (a control's 0.01 nats/token of NLL).
    """

    key: str
    meaning: str
    direction: Direction = "lower"
    unit: str = ""
    headline: bool = True
    target: float | None = None
    obligations: tuple[str, ...] = ()
    rank_samples_by: str | None = None
    plot: Plot = "none"
    finding: str = ""
    material: float = 0.0

    def __post_init__(self) -> None:
        if self.direction == "two-sided" and self.target is None:
            raise ValueError(f"metric {self.key!r}: a two-sided metric needs a `target`")
        if not re.fullmatch(r"[A-Za-z0-9_.*%-]+", self.key):
            raise ValueError(f"metric {self.key!r}: keys are letters, digits, '_', '.', '-', '%' and '*' patterns")

    @property
    def is_pattern(self) -> bool:
        return "*" in self.key

    def matches(self, key: str) -> bool:
        """Whether `key` is this metric, or one of its breakdowns for a pattern."""
        if not self.is_pattern:
            return key == self.key
        return re.fullmatch(".+".join(re.escape(p) for p in self.key.split("*")), key) is not None

    @property
    def higher_is_better(self) -> bool | None:
        """True/False for one-sided metrics; None for two-sided and observed ones."""
        return None if self.direction in ("two-sided", "observed") else self.direction == "higher"

    def worse(self, delta: float, base_value: float | None = None, observed_higher_is_better: bool = True) -> bool:
        """Whether a change by `delta` from `base_value` moves the metric the bad way."""
        if self.direction == "higher" or (self.direction == "observed" and observed_higher_is_better):
            return delta < 0
        if self.direction in ("lower", "observed"):
            return delta > 0
        if base_value is None or self.target is None or not math.isfinite(base_value):
            return delta != 0
        return abs(base_value + delta - self.target) > abs(base_value - self.target)


def find_spec(specs: Sequence[MetricSpec], key: str) -> MetricSpec | None:
    """The declaration of `key`: an exact key first, else the most specific matching pattern."""
    for spec in specs:
        if not spec.is_pattern and spec.key == key:
            return spec
    patterns = [s for s in specs if s.is_pattern and s.matches(key)]
    return max(patterns, key=lambda s: len(s.key.replace("*", ""))) if patterns else None


def undeclared(specs: Sequence[MetricSpec], keys: Iterable[str]) -> list[str]:
    """Keys that no declaration covers."""
    return [k for k in keys if find_spec(specs, k) is None]


def suite_specs(suite_cls: object) -> tuple[MetricSpec, ...]:
    """A suite class's declarations (empty for an undeclared third-party suite)."""
    specs = getattr(suite_cls, "metrics", ())
    return tuple(s for s in specs if isinstance(s, MetricSpec)) if isinstance(specs, (tuple, list)) else ()


def is_headline(specs: Sequence[MetricSpec], key: str) -> bool:
    """Headline per the declaration; an undeclared key is a headline unless it has a dotted part (a breakdown)."""
    spec = find_spec(specs, key)
    if spec is not None:
        return spec.headline
    return "." not in key
