"""Policy gates: bounds on a metric's value and on its delta against the base, per subject.

A gate on a metric that could not be computed fails with the reason; it never passes silently.
`warn` gates are reported but do not fail; `only_significant` gates fail only when the whole 95%
interval lies past the bound and, for a bound on the delta, the delta is significant after the run's
false-discovery control (its q-value, see harness/stats.py). Gate metric names are checked against the
suites' metric declarations before a run starts (`check_policy_metrics`), so a typo costs no model load.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config import GateConfig, PolicyConfig, format_validation_error
from harness.errors import InputError, did_you_mean
from harness.metrics import MetricSpec, find_spec
from harness.scorecard import GateResult, MetricResult, Scorecard

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load_policy(path: Path) -> PolicyConfig:
    """A policy file: `[[gate]]` entries at top level."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read policy ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: TOML syntax error: {exc}") from None
    try:
        return PolicyConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(format_validation_error(str(path), exc, PolicyConfig)) from None


def _known_metrics(scorecard: Scorecard) -> set[str]:
    """Metrics some subject has, or that a suite reported as not computable."""
    return {
        f"{suite}.{metric}"
        for suites in scorecard.results.values()
        for suite, result in suites.items()
        for metric in [*result.metrics, *result.missing]
    }


def check_policy_metrics(policy: PolicyConfig, declared: dict[str, tuple[MetricSpec, ...]],
                         left_out: tuple[str, ...] = ()) -> None:
    """Every gate names `<suite>.<key>` of a selected suite and a key its declarations cover; else an
    `InputError` with a did-you-mean. Suites that declare nothing are not checked; `left_out` are
    registered suites this run does not select (said so, instead of "unknown")."""
    problems = []
    names = [f"{suite}.{spec.key}" for suite, specs in declared.items() for spec in specs]
    for gate in policy.gate:
        suite, _, key = gate.metric.partition(".")
        if suite not in declared:
            why = "is not selected for this run" if suite in left_out else "is not a known suite"
            problems.append(f"{gate.metric!r}: suite {suite!r} {why}{did_you_mean(gate.metric, names)}")
        elif declared[suite] and find_spec(declared[suite], key) is None:
            problems.append(f"{gate.metric!r}: {suite} declares no metric {key!r}{did_you_mean(gate.metric, names)}")
    if problems:
        raise InputError("policy: unknown metric(s) " + "; ".join(problems))


def _bounds(gate: GateConfig) -> list[tuple[str, str, float]]:
    """(what, op, bound) for each bound the gate sets: what is 'value' or 'delta'."""
    bounds = [("value", ">=", gate.min), ("value", "<=", gate.max),
              ("delta", ">=", gate.min_delta_vs_base), ("delta", "<=", gate.max_delta_vs_base)]
    return [(what, op, bound) for what, op, bound in bounds if bound is not None]


def _subjects(scorecard: Scorecard, patterns: list[str]) -> list[str]:
    names = [s.name for s in scorecard.subjects]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return [n for n in chosen if n != "base"] if patterns == ["*"] else chosen


def _number(x: float, unit: str) -> str:
    return f"{x:.3f}" if unit in ("rate", "signed_rate", "AUC", "ratio", "") or abs(x) < 100 else f"{x:.4g}"


def _detail(scorecard: Scorecard, subject: str, gate_metric: str, metric: MetricResult, what: str) -> str:
    """What the bound was compared with, in words a reader cannot take for chance: "delta_vs_base of mia_auc =
    +0.500 (AUC 1.000 vs base 0.500)", "value of op_rate = 0.006 (95% CI 0.001 to 0.012)"."""
    suite, _, key = gate_metric.partition(".")
    from harness.registry import metric_specs

    spec = find_spec(metric_specs(suite), key)
    unit = spec.unit if spec is not None else ("AUC" if key.rsplit(".", 1)[-1].endswith("auc") else "")
    label = f"{unit} " if unit and unit not in ("rate", "signed_rate", "ratio") else ""
    if what == "delta" and metric.delta_vs_base is not None:
        base = scorecard.metric("base", gate_metric)
        versus = f"vs base {_number(base.value, unit)}" if base is not None else "vs the base"
        return (f"delta_vs_base of {key} = {metric.delta_vs_base.value:+.3f} "
                f"({label}{_number(metric.value, unit)} {versus})")
    ci = (f" (95% CI {_number(metric.ci_low, unit)} to {_number(metric.ci_high, unit)})"
          if metric.ci_low is not None and metric.ci_high is not None else "")
    return f"value of {key} = {label}{_number(metric.value, unit)}{ci}"


def _check(metric: MetricResult, what: str, op: str, bound: float, only_significant: bool) -> GateResult | str:
    """Evaluate one bound; returns a partial result, or the reason it cannot be evaluated."""
    if what == "delta":
        if metric.delta_vs_base is None:
            return "no delta against the base (the base row, or no paired data)"
        value, low, high = metric.delta_vs_base.value, metric.delta_vs_base.ci_low, metric.delta_vs_base.ci_high
    else:
        value, low, high = metric.value, metric.ci_low, metric.ci_high
    passed = value >= bound if op == ">=" else value <= bound
    if not passed and only_significant and low is not None and high is not None:
        passed = high >= bound if op == ">=" else low <= bound  # the interval still reaches the bound
        if what == "delta" and metric.delta_vs_base is not None and not metric.delta_vs_base.discovered:
            passed = True  # not a discovery after the false-discovery control
    rule = f"{'delta_vs_base' if what == 'delta' else 'value'} {op} {bound:g}"
    return GateResult(subject="", metric="", rule=rule, value=value, passed=passed, threshold=bound,
                      ci_low=low, ci_high=high)


def apply_policy(scorecard: Scorecard, policy: PolicyConfig,
                 declared: dict[str, tuple[MetricSpec, ...]] | None = None) -> list[GateResult]:
    """Evaluate every gate on every matching subject; unknown metric names are input errors. A metric that
    the suite declares (`declared`: suite -> declarations) but did not emit fails its gate as missing."""
    known = _known_metrics(scorecard)
    declared = declared or {}

    def is_declared(metric: str) -> bool:
        suite, _, key = metric.partition(".")
        return find_spec(declared.get(suite, ()), key) is not None

    unknown = [g.metric for g in policy.gate if g.metric not in known and not is_declared(g.metric)]
    if unknown:
        raise InputError("policy: unknown metric(s) " + "; ".join(f"{m!r}{did_you_mean(m, known)}" for m in unknown))
    results: list[GateResult] = []
    for gate in policy.gate:
        for subject in _subjects(scorecard, gate.subjects):
            metric = scorecard.metric(subject, gate.metric)
            for what, op, bound in _bounds(gate):
                common = {"subject": subject, "metric": gate.metric, "severity": gate.severity, "threshold": bound}
                if metric is None:
                    results.append(_undefined(scorecard, gate, subject, what, op, bound, common))
                    continue
                checked = _check(metric, what, op, bound, gate.only_significant)
                if isinstance(checked, str):
                    rule = f"delta_vs_base {op} {bound:g}"
                    results.append(GateResult(rule=rule, value=None, passed=False, reason=checked, **common))
                else:
                    detail = _detail(scorecard, subject, gate.metric, metric, what)
                    results.append(checked.model_copy(update={**common, "detail": detail}))
    return results


def _undefined(scorecard: Scorecard, gate: GateConfig, subject: str, what: str, op: str, bound: float,
               common: dict[str, Any]) -> GateResult:
    """A gate whose metric has no value for this subject, with the suite's reason (undefined, e.g. a ratio 0/0, or
    refused). It fails unless the gate's `undefined` option says "pass" (or "warn": reported, never failing)."""
    suite, _, key = gate.metric.partition(".")
    result = scorecard.results.get(subject, {}).get(suite)
    why = result.missing.get(key) if result else None
    reason = f"metric missing: {why}" if why else "metric missing: not computed for this subject"
    rule = f"{'delta_vs_base' if what == 'delta' else 'value'} {op} {bound:g}"
    if gate.undefined == "pass":
        reason += " (the gate's `undefined = \"pass\"` counts it as passing)"
    elif gate.undefined == "warn":
        reason += " (the gate's `undefined = \"warn\"` reports it without failing)"
        common = {**common, "severity": "warn"}
    return GateResult(rule=rule, value=None, passed=gate.undefined == "pass", reason=reason,
                      detail=f"{'delta_vs_base of ' if what == 'delta' else 'value of '}{key}: {reason}", **common)


def gates_passed(results: list[GateResult]) -> bool:
    """True when every `error` gate passed (`warn` gates never fail a run)."""
    return all(g.passed for g in results if g.severity == "error")
