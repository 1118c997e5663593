"""Comparing two scorecards (say, main's adapter and a PR's): per metric the change and its significance.

The runs are treated as independent estimates: the standard error of each side is read back from its
stored 95% interval (width / 2·1.96) and the change is significant when |z| > 1.96. Runs on different
suite data are not comparable and are refused unless forced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.errors import InputError
from harness.scorecard import MetricResult, Scorecard

Z_95 = 1.959964


@dataclass(frozen=True)
class Change:
    """One metric of one subject in both runs."""

    subject: str
    metric: str  # <suite>.<key>
    old: float | None
    new: float | None
    change: float | None
    significant: bool
    verdict: str  # "better", "worse", "same", "added", "removed"


def _se(metric: MetricResult) -> float:
    if metric.ci_low is None or metric.ci_high is None:
        return math.nan
    return (metric.ci_high - metric.ci_low) / (2 * Z_95)


def _check_same_data(old: Scorecard, new: Scorecard) -> None:
    for subject, suites in new.results.items():
        for suite, result in suites.items():
            before = old.results.get(subject, {}).get(suite)
            if before is not None and before.data_sha256 != result.data_sha256:
                raise InputError(
                    f"compare: suite {suite!r} ran on different data in the two runs (data_sha256 "
                    f"{before.data_sha256[:12]} vs {result.data_sha256[:12]}); pass --force to compare anyway"
                )


def compare_scorecards(old: Scorecard, new: Scorecard, *, force: bool = False) -> list[Change]:
    """Every (subject, metric) in either run, with the change and whether it is significant."""
    if not force:
        _check_same_data(old, new)
    changes: list[Change] = []
    subjects = [s.name for s in new.subjects] + [s.name for s in old.subjects if s.name not in new.results]
    for subject in subjects:
        keys = {f"{suite}.{k}" for run in (old, new) for suite, r in run.results.get(subject, {}).items()
                for k in r.metrics}
        for key in sorted(keys):
            a, b = old.metric(subject, key), new.metric(subject, key)
            if a is None or b is None:
                verdict = "added" if a is None else "removed"
                changes.append(Change(subject, key, a and a.value, b and b.value, None, False, verdict))
                continue
            diff = b.value - a.value
            se = math.hypot(_se(a), _se(b))
            significant = diff != 0 and (se == 0 or (math.isfinite(se) and abs(diff) / se > Z_95))
            verdict = "same" if not significant else ("better" if (diff > 0) == b.higher_is_better else "worse")
            changes.append(Change(subject, key, a.value, b.value, diff, significant, verdict))
    return changes


def render_compare_markdown(old: Scorecard, new: Scorecard, changes: list[Change]) -> str:
    """The comparison as a Markdown table (significant changes marked)."""
    from harness.reports.cells import fmt

    marks = {"better": "✅ better", "worse": "⚠️ worse", "same": "", "added": "added", "removed": "removed"}
    lines = [f"# ppeval compare: `{old.run.id}` → `{new.run.id}`", "",
             "| subject | metric | old | new | change | |", "|---|---|---|---|---|---|"]
    for c in changes:
        change = "" if c.change is None else f"{c.change:+.3g}{' *' if c.significant else ''}"
        lines.append(f"| {c.subject} | `{c.metric}` | {fmt(c.old)} | {fmt(c.new)} | {change} | {marks[c.verdict]} |")
    lines += ["", "`*`: |change| exceeds 1.96 combined standard errors read from the stored 95% intervals."]
    return "\n".join(lines) + "\n"
