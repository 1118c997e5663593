"""Formatting shared by every report: numbers to 3 significant digits, deltas with their verdict."""

from __future__ import annotations

import math

from harness.metrics import MetricSpec
from harness.scorecard import MetricResult, Scorecard


def fmt(x: float | None) -> str:
    """A number to 3 significant digits, trailing zeros kept (0.300); whole numbers from 1,000; '–' for None."""
    if x is None:
        return "–"
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e3 <= abs(x) < 1e6:
        return f"{x:.0f}"
    return f"{x:#.3g}".rstrip(".") if abs(x) >= 1e-4 else f"{x:.3g}"


def fmt_unit(x: float | None, unit: str) -> str:
    """A value in its unit's words: rates as percentages, others with the unit after the number."""
    if x is None:
        return "–"
    if unit in ("rate", "signed_rate"):
        return f"{fmt(100 * x)}%"
    return f"{fmt(x)} {unit}".rstrip() if unit not in ("AUC", "ratio", "perplexity") else fmt(x)


def value_cell(metric: MetricResult) -> str:
    return f"{fmt(metric.value)} [{fmt(metric.ci_low)}, {fmt(metric.ci_high)}]"


def delta_verdict(metric: MetricResult, spec: MetricSpec | None = None) -> str | None:
    """'better'/'worse' when the delta is a discovery after the false-discovery control at least as large as the
    declared `material` change, else None; the direction comes from the metric's declaration (two-sided: towards or
    away from its target)."""
    d = metric.delta_vs_base
    if d is None or not d.discovered or (spec is not None and abs(d.value) < spec.material):
        return None
    if spec is not None:
        return "worse" if spec.worse(d.value, metric.value - d.value, metric.higher_is_better) else "better"
    return "better" if (d.value > 0) == metric.higher_is_better else "worse"


def delta_cell(metric: MetricResult, spec: MetricSpec | None = None) -> tuple[str, str | None]:
    """The delta text (`*` when significant after FDR) and its verdict: 'better'/'worse', else None."""
    d = metric.delta_vs_base
    if d is None:
        return "", None
    verdict = delta_verdict(metric, spec)
    return f"Δ {d.value:+.3g}{' *' if d.discovered else ''}", verdict


def rows(scorecard: Scorecard) -> list[tuple[str, str]]:
    """(suite, metric key) pairs in the order they first appear across subjects."""
    seen: dict[tuple[str, str], None] = {}
    for subject in scorecard.subjects:
        for suite, result in scorecard.results.get(subject.name, {}).items():
            for key in result.metrics:
                seen[(suite, key)] = None
    return list(seen)
