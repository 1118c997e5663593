"""The scorecard as pydantic models, read and written atomically (the schema is described in docs/design.md).

Schema version 2 adds each delta's `p_value` and `q_value` (Benjamini–Hochberg, see `apply_fdr`), the run-level
`notes` (which families the false-discovery control used) and the run's `options` (CLI options that change
results). Version 1 scorecards still read: their deltas have no q-value and are judged by their interval alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import InputError
from harness.io import atomic_write_text
from harness.stats import FDR_LEVEL, Estimate, benjamini_hochberg

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class DeltaResult(_Model):
    value: float
    ci_low: float | None
    ci_high: float | None
    significant: bool  # the 95% interval excludes 0 (no multiplicity control)
    p_value: float | None = None
    q_value: float | None = None  # Benjamini–Hochberg within the delta's family; None in v1 scorecards

    @property
    def discovered(self) -> bool:
        """Significant after the false-discovery control: the interval excludes 0 and q ≤ 0.05 (a v1 delta,
        without a q-value, by its interval alone)."""
        return self.significant and (self.q_value is None or self.q_value <= FDR_LEVEL)


class MetricResult(_Model):
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    higher_is_better: bool
    delta_vs_base: DeltaResult | None = None

    @classmethod
    def from_estimate(cls, est: Estimate) -> MetricResult:
        delta = None
        if est.delta_vs_base is not None:
            d = est.delta_vs_base
            delta = DeltaResult(value=d.value, ci_low=_finite(d.ci_low), ci_high=_finite(d.ci_high),
                                significant=d.significant, p_value=_finite(d.p_value))
        return cls(value=est.value, ci_low=_finite(est.ci_low), ci_high=_finite(est.ci_high), n=est.n,
                   higher_is_better=est.higher_is_better, delta_vs_base=delta)


class SuiteResult(_Model):
    suite_version: str
    data_sha256: str
    metrics: dict[str, MetricResult] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    missing: dict[str, str] = Field(default_factory=dict)  # metric key -> why it could not be computed
    details: dict[str, Any] = Field(default_factory=dict)  # plot data (ROC points, ...), JSON, no raw PII
    error: str | None = None  # v2: the suite's score() raised this; its metrics are missing


class SubjectInfo(_Model):
    name: str
    kind: Literal["base", "adapter", "full"]
    path: str
    sha256: str
    tags: dict[str, str] = Field(default_factory=dict)
    lineage: dict[str, str] = Field(default_factory=dict)  # harness/lineage.py: base, digests, training data


class RunInfo(_Model):
    id: str
    started_at: str
    finished_at: str
    harness_version: str
    config_sha256: str
    seed: int
    env: dict[str, str]
    suites: dict[str, str] = Field(default_factory=dict)  # name -> version
    engine: dict[str, str] = Field(default_factory=dict)


class GateResult(_Model):
    subject: str
    metric: str
    rule: str
    value: float | None
    passed: bool
    reason: str = ""
    severity: Literal["error", "warn"] = "error"
    threshold: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    detail: str = ""  # what was compared, e.g. "delta_vs_base of mia_auc = +0.500 (AUC 1.000 vs base 0.500)"


class Scorecard(_Model):
    schema_version: Literal[1, 2] = SCHEMA_VERSION
    run: RunInfo
    subjects: list[SubjectInfo]
    results: dict[str, dict[str, SuiteResult]]
    gates: list[GateResult] = Field(default_factory=list)
    passed: bool = True
    notes: list[str] = Field(default_factory=list)  # run-level notes (v2), e.g. the FDR families
    options: dict[str, Any] = Field(default_factory=dict)  # v2: CLI options that changed results (limit, suites, …)

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        for suites in data["results"].values():
            for suite in suites.values():
                if suite.get("error") is None:
                    suite.pop("error", None)
                for metric in suite["metrics"].values():
                    if metric.get("delta_vs_base") is None:
                        metric.pop("delta_vs_base", None)  # absent on the base row, per the schema
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    def write(self, path: Path) -> None:
        atomic_write_text(path, self.to_json())

    def metric(self, subject: str, key: str) -> MetricResult | None:
        """`key` is `<suite>.<metric key>`; None when absent."""
        suite, _, metric = key.partition(".")
        result = self.results.get(subject, {}).get(suite)
        return result.metrics.get(metric) if result else None


def read_scorecard(path: Path) -> Scorecard:
    """Load and validate a scorecard.json; a wrong file is an `InputError` naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read a scorecard ({exc})") from None
    if not isinstance(data, dict) or data.get("schema_version") not in READABLE_VERSIONS:
        got = data.get("schema_version") if isinstance(data, dict) else None
        raise InputError(f"{path}: expected a ppeval scorecard with schema_version 1 or {SCHEMA_VERSION}, got {got!r}")
    try:
        return Scorecard.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: invalid scorecard at `{where}`: {first['msg']}") from None


Family = Callable[[str, str, str], str]  # (subject, suite, metric key) -> family name


def apply_fdr(results: dict[str, dict[str, SuiteResult]], family: Family) -> dict[str, int]:
    """Set every delta's `q_value` by Benjamini–Hochberg within its family; returns the family sizes.

    Deltas without a p-value (non-finite, or read from a v1 scorecard) are left out of every family."""
    members: dict[str, list[DeltaResult]] = {}
    for subject, suites in results.items():
        for suite, result in suites.items():
            for key, metric in result.metrics.items():
                d = metric.delta_vs_base
                if d is not None and d.p_value is not None:
                    members.setdefault(family(subject, suite, key), []).append(d)
    for deltas in members.values():
        for d, q in zip(deltas, benjamini_hochberg([d.p_value or 0.0 for d in deltas]), strict=True):
            d.q_value = q
    return {name: len(deltas) for name, deltas in members.items()}
