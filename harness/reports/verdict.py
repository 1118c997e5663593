"""The verdict: the first thing every report shows — one row per subject, one cell per suite.

Each cell is the suite's headline finding for that subject, in words, with a mark: `fail` (an
error-severity gate on the suite's metrics failed, or the suite itself failed), `flag` (a headline
delta is significant after the false-discovery control and in the bad direction, per the metric's
declaration), else `ok`. Breakdown metrics never set a mark; they are shown below, collapsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.metrics import MetricSpec, find_spec, is_headline
from harness.registry import metric_specs
from harness.reports.cells import delta_verdict, fmt, fmt_unit
from harness.scorecard import GateResult, MetricResult, Scorecard

Mark = Literal["fail", "flag", "ok", "none"]
MARK_ORDER: dict[str, int] = {"fail": 3, "flag": 2, "ok": 1, "none": 0}
MARK_SYMBOL: dict[str, str] = {"fail": "✗ fail", "flag": "⚠ flag", "ok": "✓ ok", "none": "–"}


@dataclass(frozen=True)
class Finding:
    """One metric's headline finding: the words and how bad it is (for ordering)."""

    metric: str  # <suite>.<key>
    text: str
    q_value: float | None


@dataclass
class Cell:
    """One subject × suite cell of the verdict."""

    suite: str
    mark: Mark
    text: str
    findings: list[Finding] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)  # the failed error gates behind a `fail`


@dataclass
class SubjectVerdict:
    """One subject's row: its cells, and every gate evaluated on it."""

    subject: str
    cells: list[Cell]
    gates: list[GateResult]

    @property
    def mark(self) -> Mark:
        """The worst mark of the row."""
        return max((c.mark for c in self.cells), key=lambda m: MARK_ORDER[m], default="none")


def specs_by_suite(scorecard: Scorecard) -> dict[str, tuple[MetricSpec, ...]]:
    """Each suite's declarations from the registry (empty where the suite is not installed here)."""
    names = dict.fromkeys([*scorecard.run.suites, *(s for r in scorecard.results.values() for s in r)])
    return {name: metric_specs(name) for name in names}


def suite_order(scorecard: Scorecard) -> list[str]:
    """Suites in run order, then any others found in the results."""
    names = dict.fromkeys(scorecard.run.suites)
    for subject in scorecard.subjects:
        names.update(dict.fromkeys(scorecard.results.get(subject.name, {})))
    return list(names)


def finding_text(key: str, metric: MetricResult, spec: MetricSpec | None) -> str:
    """'<key> <value> vs base <base>' in the metric's unit, or the declaration's own `finding` wording."""
    d = metric.delta_vs_base
    unit = spec.unit if spec else ""
    base = metric.value - d.value if d else None
    if spec is not None and spec.finding and d is not None:
        delta = f"{d.value * 100:+.3g} points" if unit in ("rate", "signed_rate") else f"{d.value:+.3g}"
        return spec.finding.format(delta=delta, value=fmt_unit(metric.value, unit), base=fmt_unit(base, unit))
    return f"{key} {fmt_unit(metric.value, unit)} vs base {fmt_unit(base, unit)}"


def _gate_text(gate: GateResult) -> str:
    value = "missing" if gate.value is None else fmt(gate.value)
    return f"gate {gate.metric.partition('.')[2]} {gate.rule} failed ({value})"


def _cell(scorecard: Scorecard, subject: str, suite: str, specs: tuple[MetricSpec, ...],
          gates: list[GateResult]) -> Cell:
    result = scorecard.results.get(subject, {}).get(suite)
    failed = [g for g in gates if not g.passed and g.severity == "error" and g.metric.partition(".")[0] == suite]
    if result is None:
        return Cell(suite, "fail" if failed else "none", "not run", gates=failed)
    if result.error:
        return Cell(suite, "fail", f"suite failed: {result.error}", gates=failed)
    findings: list[tuple[float, int, Finding]] = []
    for key, metric in result.metrics.items():
        if not is_headline(specs, key):
            continue
        spec = find_spec(specs, key)
        if delta_verdict(metric, spec) == "worse":
            q = metric.delta_vs_base.q_value if metric.delta_vs_base else None
            rank = specs.index(spec) if spec is not None else len(specs)
            # the clearest first; q-values below 0.001 all count as clear, then the suite's declaration order
            findings.append((max(q if q is not None else 0.05, 0.001), rank,
                             Finding(f"{suite}.{key}", finding_text(key, metric, spec), q)))
    findings = sorted(findings, key=lambda t: (t[0], t[1]))
    ordered = [f for _, _, f in findings]
    words = [f.text for f in ordered[:2]] + ([f"+{len(ordered) - 2} more"] if len(ordered) > 2 else [])
    if failed:
        return Cell(suite, "fail", "; ".join([_gate_text(g) for g in failed[:2]] + words[:1]), ordered, failed)
    if ordered:
        return Cell(suite, "flag", "; ".join(words), ordered)
    if not result.metrics:
        return Cell(suite, "none", "no metric computed")
    return Cell(suite, "ok", "no significant headline change")


def verdict(scorecard: Scorecard) -> list[SubjectVerdict]:
    """One row per fine-tuned subject (the base is the reference, not judged)."""
    specs = specs_by_suite(scorecard)
    suites = suite_order(scorecard)
    rows = []
    for subject in scorecard.subjects:
        if subject.kind == "base":
            continue
        gates = [g for g in scorecard.gates if g.subject == subject.name]
        cells = [_cell(scorecard, subject.name, suite, specs.get(suite, ()), gates) for suite in suites]
        rows.append(SubjectVerdict(subject.name, cells, gates))
    return rows


def headline_keys(suite: str, keys: list[str]) -> tuple[list[str], list[str]]:
    """A suite's keys split into (headline, breakdown) by its declarations."""
    specs = metric_specs(suite)
    head = [k for k in keys if is_headline(specs, k)]
    return head, [k for k in keys if k not in head]
