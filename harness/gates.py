"""Policy gates: bounds on a metric's value and on its delta against the base, per subject."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

from pydantic import ValidationError

from harness.config import GateConfig, PolicyConfig, format_validation_error
from harness.errors import InputError, did_you_mean
from harness.scorecard import GateResult, Scorecard

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


def _rule(gate: GateConfig) -> list[tuple[str, str, float]]:
    bounds = [("value", ">=", gate.min), ("value", "<=", gate.max),
              ("delta", ">=", gate.min_delta_vs_base), ("delta", "<=", gate.max_delta_vs_base)]
    return [(what, op, bound) for what, op, bound in bounds if bound is not None]


def apply_policy(scorecard: Scorecard, policy: PolicyConfig) -> list[GateResult]:
    """Evaluate every gate on every matching subject; a metric that is missing fails, never passes."""
    known = _known_metrics(scorecard)
    for gate in policy.gate:
        if gate.metric not in known:
            raise InputError(
                f"policy: unknown metric {gate.metric!r}{did_you_mean(gate.metric, known)}"
            )
    results: list[GateResult] = []
    names = [s.name for s in scorecard.subjects]
    for gate in policy.gate:
        patterns = gate.subjects
        chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        if patterns == ["*"]:
            chosen = [n for n in chosen if n != "base"]
        for subject in chosen:
            metric = scorecard.metric(subject, gate.metric)
            for what, op, bound in _rule(gate):
                rule = f"{'delta_vs_base' if what == 'delta' else 'value'} {op} {bound:g}"
                if metric is None:
                    suite, _, key = gate.metric.partition(".")
                    result = scorecard.results.get(subject, {}).get(suite)
                    why = (result.missing.get(key) if result else None) or "not computed for this subject"
                    results.append(GateResult(subject=subject, metric=gate.metric, rule=rule, value=None,
                                              passed=False, reason=f"metric missing: {why}"))
                    continue
                if what == "delta":
                    if metric.delta_vs_base is None:
                        results.append(GateResult(subject=subject, metric=gate.metric, rule=rule, value=None,
                                                  passed=False, reason="no delta against the base"))
                        continue
                    value = metric.delta_vs_base.value
                else:
                    value = metric.value
                passed = value >= bound if op == ">=" else value <= bound
                results.append(GateResult(subject=subject, metric=gate.metric, rule=rule, value=value, passed=passed))
    return results
