"""Formatting shared by the terminal and Markdown reports."""

from __future__ import annotations

from harness.scorecard import MetricResult, Scorecard


def fmt(x: float | None) -> str:
    if x is None:
        return "–"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:.3f}"


def value_cell(metric: MetricResult) -> str:
    return f"{fmt(metric.value)} [{fmt(metric.ci_low)}, {fmt(metric.ci_high)}]"


def delta_cell(metric: MetricResult) -> tuple[str, str | None]:
    """The delta text and its verdict: 'better'/'worse' when significant, else None."""
    d = metric.delta_vs_base
    if d is None:
        return "", None
    text = f"Δ {d.value:+.3g}{' *' if d.significant else ''}"
    if not d.significant:
        return text, None
    better = (d.value > 0) == metric.higher_is_better
    return text, "better" if better else "worse"


def rows(scorecard: Scorecard) -> list[tuple[str, str]]:
    """(suite, metric key) pairs in the order they first appear across subjects."""
    seen: dict[tuple[str, str], None] = {}
    for subject in scorecard.subjects:
        for suite, result in scorecard.results.get(subject.name, {}).items():
            for key in result.metrics:
                seen[(suite, key)] = None
    return list(seen)
