"""The scorecard: schema version 1 of DESIGN.md as pydantic models, read and written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import InputError
from harness.io import atomic_write_text
from harness.stats import Estimate

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class DeltaResult(_Model):
    value: float
    ci_low: float | None
    ci_high: float | None
    significant: bool


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
                                significant=d.significant)
        return cls(value=est.value, ci_low=_finite(est.ci_low), ci_high=_finite(est.ci_high), n=est.n,
                   higher_is_better=est.higher_is_better, delta_vs_base=delta)


class SuiteResult(_Model):
    suite_version: str
    data_sha256: str
    metrics: dict[str, MetricResult] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    missing: dict[str, str] = Field(default_factory=dict)  # metric key -> why it could not be computed
    details: dict[str, Any] = Field(default_factory=dict)  # plot data (ROC points, ...), JSON, no raw PII


class SubjectInfo(_Model):
    name: str
    kind: Literal["base", "adapter", "full"]
    path: str
    sha256: str
    tags: dict[str, str] = Field(default_factory=dict)


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


class Scorecard(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    run: RunInfo
    subjects: list[SubjectInfo]
    results: dict[str, dict[str, SuiteResult]]
    gates: list[GateResult] = Field(default_factory=list)
    passed: bool = True

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        for suites in data["results"].values():
            for suite in suites.values():
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
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        got = data.get("schema_version") if isinstance(data, dict) else None
        raise InputError(f"{path}: expected a ppeval scorecard with schema_version {SCHEMA_VERSION}, got {got!r}")
    try:
        return Scorecard.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: invalid scorecard at `{where}`: {first['msg']}") from None
