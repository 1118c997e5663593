"""Canary exposure (Carlini et al., "The Secret Sharer", 2019).

Rank exposure: log2|R| - log2 rank, where rank is the canary's position by log-perplexity among |R|
reference candidates from the same secret space that were never inserted, so a canary ranked first
among m references has exposure log2 m. Ties are split evenly: the exposure is the mean over the
positions a random tie-break could give, so a canary exchangeable with its references (a never-inserted
twin) reads exactly `chance_exposure(m)` ≈ log2(e) ≈ 1.44 bits in expectation on any model, even one that
ties everything. (Counting ties against the canary reads below that on a model with many ties, and a
subject with fewer ties than the base then shows a spurious positive delta.) Skew-normal
exposure (Sec. 6.3 of the paper): fit a skew-normal to the references' log-perplexities and take
-log2 F(Px), which is not capped at log2 m.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

_TINY = np.finfo(float).tiny


def _mean_log2(lo: int, hi: int) -> float:
    """Mean of log2 r over the integers lo <= r <= hi (lo >= 1)."""
    return (math.lgamma(hi + 1) - math.lgamma(lo)) / math.log(2) / (hi - lo + 1)


def rank_exposure(canary_px: float, reference_px: Sequence[float]) -> float:
    """log2 m - log2 rank, rank = 1 + #references more likely (lower Px); ties split evenly."""
    refs = np.asarray(reference_px, dtype=float)
    better = int(np.sum(refs < canary_px))
    ties = int(np.sum(refs == canary_px))
    return math.log2(len(refs)) - _mean_log2(better + 1, better + 1 + ties)


def twin_exposures(px: np.ndarray, is_twin: np.ndarray) -> np.ndarray:
    """Rank exposure of each twin (`is_twin`) among every other candidate of one pool (leave-one-out),
    ties split evenly; `px` holds the log-perplexities of the twins and the drawn references together."""
    from scipy.special import gammaln

    pool = np.sort(px)
    twins = px[is_twin]
    better = np.searchsorted(pool, twins, side="left")
    ties = np.searchsorted(pool, twins, side="right") - better - 1  # the twin itself is not a reference
    mean_log2_rank = (gammaln(better + ties + 2) - gammaln(better + 1)) / math.log(2) / (ties + 1)
    return math.log2(len(pool) - 1) - mean_log2_rank


def chance_exposure(m: int) -> float:
    """Expected rank exposure of a candidate exchangeable with its m references (rank uniform on 1..m+1):
    log2 m - log2((m+1)!)/(m+1), which tends to log2(e) ≈ 1.4427 bits as m grows."""
    return math.log2(m) - _mean_log2(1, m + 1)


def fit_skewnorm(reference_px: Sequence[float]) -> tuple[float, float, float]:
    """(shape, loc, scale) of a skew-normal fitted to the reference log-perplexities."""
    a, loc, scale = stats.skewnorm.fit(np.asarray(reference_px, dtype=float))
    return float(a), float(loc), float(scale)


def skewnorm_exposure(canary_px: float, params: tuple[float, float, float]) -> float:
    """-log2 F(Px) under the fitted skew-normal (clipped at the smallest positive float)."""
    a, loc, scale = params
    return float(-np.log2(max(stats.skewnorm.cdf(canary_px, a, loc=loc, scale=scale), _TINY)))
