"""Bootstrap confidence intervals and paired deltas against the base, in one place.

Every metric is estimated from per-item observations aligned across subjects, so one set of
bootstrap resamples serves the value's interval and the paired delta's interval alike. scipy's
`stats.bootstrap` handles neither cluster resampling nor a shared resample across several subjects
with a ragged (cluster) index, so the percentile bootstrap is written here by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], float]
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Delta:
    """A subject's metric minus the base's, with a paired bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    significant: bool


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
            d_low, d_high = _interval(boot[name] - boot[base])
            delta = Delta(float(d_value), d_low, d_high, bool(d_low > 0 or d_high < 0))
        results[name] = Estimate(
            value=float(stat(np.asarray(values))),
            ci_low=low,
            ci_high=high,
            n=n,
            higher_is_better=observations.higher_is_better,
            delta_vs_base=delta,
        )
    return results
