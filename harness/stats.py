"""Bootstrap confidence intervals and paired deltas against the base, in one place.

Every metric is estimated from per-item observations aligned across subjects, so one set of
bootstrap resamples serves the value's interval and the paired delta's interval alike. scipy's
`stats.bootstrap` handles neither cluster resampling nor a shared resample across several subjects
with a ragged (cluster) index, so the percentile bootstrap is written here by hand.

Each paired delta also gets a two-sided p-value for "no difference" from the same resamples (normal
approximation with the bootstrap standard error, so it is not floored at 1/resamples), and
`benjamini_hochberg` turns a family of them into q-values (false discovery rate, scipy's
`false_discovery_control`); a delta counts as significant after FDR when its interval excludes 0 and
its q-value is at most `FDR_LEVEL`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], float]
CONFIDENCE = 0.95
FDR_LEVEL = 0.05


@dataclass(frozen=True)
class Delta:
    """A subject's metric minus the base's, with a paired bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    significant: bool
    p_value: float = math.nan


@dataclass(frozen=True)
class Estimate:
    """A metric's value with its 95% interval and sample size, and the delta against the base."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool
    delta_vs_base: Delta | None = None


@dataclass(frozen=True)
class Observations:
    """Per-item observations of one metric for each subject; row i is the same item for every subject.

    `statistic` maps an observation array (rows = items) to the metric; None means the mean of a 1-D
    array. `clusters` marks items that are not independent (one template rendered many times): the
    bootstrap then resamples whole clusters. `strata` resamples within each stratum (members and
    non-members for an AUC), so every resample keeps both classes.
    """

    per_subject: Mapping[str, np.ndarray]
    higher_is_better: bool
    statistic: Statistic | None = None
    clusters: np.ndarray | None = None
    strata: np.ndarray | None = None

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.per_subject.values()}
        if len(lengths) > 1:
            raise ValueError(f"observations are not aligned across subjects: lengths {sorted(lengths)}")


def _resample_indices(
    n: int, n_resamples: int, rng: np.random.Generator, clusters: np.ndarray | None, strata: np.ndarray | None
) -> list[np.ndarray] | np.ndarray:
    if clusters is not None:
        groups = [np.flatnonzero(clusters == c) for c in np.unique(clusters)]
        picks = rng.integers(0, len(groups), size=(n_resamples, len(groups)))
        return [np.concatenate([groups[g] for g in row]) for row in picks]
    if strata is not None:
        parts = [np.flatnonzero(strata == s) for s in np.unique(strata)]
        cols = [part[rng.integers(0, len(part), size=(n_resamples, len(part)))] for part in parts]
        return np.concatenate(cols, axis=1)
    return rng.integers(0, n, size=(n_resamples, n))


def _apply(values: np.ndarray, indices: list[np.ndarray] | np.ndarray, statistic: Statistic | None) -> np.ndarray:
    if statistic is None and isinstance(indices, np.ndarray) and values.ndim == 1:
        return values[indices].mean(axis=1)
    stat = statistic or (lambda v: float(np.mean(v)))
    return np.array([stat(values[idx]) for idx in indices], dtype=float)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)


def estimate(
    observations: Observations, *, base: str = "base", n_resamples: int = 1000, seed: int = 0
) -> dict[str, Estimate]:
    """Value, percentile-bootstrap CI and n per subject, plus a paired delta vs `base` where it exists."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(observations.per_subject.values()), []))
    if n == 0:
        return {}
    indices = _resample_indices(n, n_resamples, rng, observations.clusters, observations.strata)
    stat = observations.statistic or (lambda v: float(np.mean(v)))
    boot = {
        name: _apply(np.asarray(v), indices, observations.statistic) for name, v in observations.per_subject.items()
    }
    results: dict[str, Estimate] = {}
    for name, values in observations.per_subject.items():
        low, high = _interval(boot[name])
        delta = None
        if name != base and base in observations.per_subject:
            d_value = stat(np.asarray(values)) - stat(np.asarray(observations.per_subject[base]))
            diffs = boot[name] - boot[base]
            d_low, d_high = _interval(diffs)
            delta = Delta(float(d_value), d_low, d_high, bool(d_low > 0 or d_high < 0), _p_value(float(d_value), diffs))
        results[name] = Estimate(
            value=float(stat(np.asarray(values))),
            ci_low=low,
            ci_high=high,
            n=n,
            higher_is_better=observations.higher_is_better,
            delta_vs_base=delta,
        )
    return results


def _p_value(delta: float, resampled: np.ndarray) -> float:
    """Two-sided p-value of "delta is 0": |delta| over the bootstrap standard error, normal approximation."""
    finite = resampled[np.isfinite(resampled)]
    if not math.isfinite(delta) or finite.size < 2:
        return math.nan
    se = float(np.std(finite, ddof=1))
    if se == 0.0:
        return 1.0 if delta == 0.0 else 0.0
    from scipy import stats as scipy_stats  # lazy: `ppeval gate` installs without scipy

    return float(2 * scipy_stats.norm.sf(abs(delta) / se))


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg q-values (adjusted p-values) of one family; NaN p-values stay NaN and are not
    counted in the family size."""
    ps = np.asarray(p_values, dtype=float)
    q = np.full(ps.shape, math.nan)
    finite = np.isfinite(ps)
    if finite.any():
        from scipy import stats as scipy_stats  # lazy: `ppeval gate` installs without scipy

        q[finite] = scipy_stats.false_discovery_control(np.clip(ps[finite], 0.0, 1.0), method="bh")
    return [float(x) for x in q]
