"""Canary exposure (Carlini et al., "The Secret Sharer", 2019).

Rank exposure: log2|R| - log2 rank, where rank is the canary's position by log-perplexity among |R|
reference candidates from the same secret space that were never inserted (ties go to the
reference), so a canary ranked first among m references has exposure log2 m. Skew-normal
exposure (Sec. 6.3 of the paper): fit a skew-normal to the references' log-perplexities and take
-log2 F(Px), which is not capped at log2 m.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

_TINY = np.finfo(float).tiny


def rank_exposure(canary_px: float, reference_px: Sequence[float]) -> float:
    """log2 m - log2 rank, with rank = 1 + #references at least as likely (lower or equal Px)."""
    refs = np.asarray(reference_px, dtype=float)
    rank = 1 + int(np.sum(refs <= canary_px))
    return math.log2(len(refs)) - math.log2(rank)


def fit_skewnorm(reference_px: Sequence[float]) -> tuple[float, float, float]:
    """(shape, loc, scale) of a skew-normal fitted to the reference log-perplexities."""
    a, loc, scale = stats.skewnorm.fit(np.asarray(reference_px, dtype=float))
    return float(a), float(loc), float(scale)


def skewnorm_exposure(canary_px: float, params: tuple[float, float, float]) -> float:
    """-log2 F(Px) under the fitted skew-normal (clipped at the smallest positive float)."""
    a, loc, scale = params
    return float(-np.log2(max(stats.skewnorm.cdf(canary_px, a, loc=loc, scale=scale), _TINY)))
