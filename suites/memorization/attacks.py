"""Membership-inference attack scores and their ROC summaries (higher score = more likely a member).

Formulas, each checked against its reference:
- loss: Yeom et al. 2018; score = -mean NLL per token.
- zlib: Carlini et al. 2021 ("Extracting Training Data from LLMs"), as in MIMIR:
  score = -(mean NLL) / len(zlib.compress(text)).
- min_k: Shi et al. 2024 (Min-K% Prob); score = mean of the lowest k% token log-probs, k = 0.2.
- min_k_pp: Zhang et al. 2025 (Min-K%++); per token (log p(x_t) - mu_t) / sigma_t with mu_t, sigma_t^2
  the mean and variance of log p under the model's own next-token distribution; mean of the lowest k%.
- ref_base: reference-model attack (Carlini et al. 2021, Mireshghallah et al. 2022) with the base as the
  reference: score = NLL_base - NLL_subject (mean per token).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from harness.requests import ScoreResponse

MIN_K = 0.2
ATTACKS = ("loss", "zlib", "min_k", "min_k_pp", "ref_base")


def mean_nll(response: ScoreResponse) -> float:
    return -response.total_logprob / max(response.n_tokens, 1)


def _lowest_mean(values: Sequence[float], fraction: float = MIN_K) -> float:
    ordered = sorted(values)
    k = max(1, int(len(ordered) * fraction))  # floor, as the Min-K% reference code; at least one token
    return float(np.mean(ordered[:k])) if ordered else math.nan


def loss_score(response: ScoreResponse) -> float:
    return -mean_nll(response)


def zlib_score(response: ScoreResponse, text: str) -> float:
    return -mean_nll(response) / len(zlib.compress(text.encode("utf-8")))


def min_k_score(response: ScoreResponse) -> float:
    return _lowest_mean(response.token_logprobs)


def min_k_pp_score(response: ScoreResponse) -> float:
    assert response.vocab_mean is not None and response.vocab_var is not None
    z = [
        (lp - mu) / math.sqrt(var) if var > 0 else 0.0
        for lp, mu, var in zip(response.token_logprobs, response.vocab_mean, response.vocab_var, strict=True)
    ]
    return _lowest_mean(z)


def attack_scores(response: ScoreResponse, base: ScoreResponse, text: str) -> dict[str, float]:
    """Every attack's membership score for one record under one subject (`base` for ref_base)."""
    return {
        "loss": loss_score(response),
        "zlib": zlib_score(response, text),
        "min_k": min_k_score(response),
        "min_k_pp": min_k_pp_score(response) if response.vocab_mean is not None else math.nan,  # none: missing
        "ref_base": mean_nll(base) - mean_nll(response),
    }


# AUC and TPR@FPR by hand: sklearn's roc_auc_score/roc_curve give the same numbers (tests/test_memorization.py
# checks it) but spend ~3 ms per call validating inputs, which made the 1,000-resample bootstrap of 20 MIA
# metrics take minutes; these are vectorised numpy over the sorted scores.


def auc(data: np.ndarray) -> float:
    """ROC AUC of rows [score, is_member]: the Mann-Whitney U statistic with ties counted half (= sklearn's)."""
    scores, members = data[:, 0], data[:, 1] > 0.5
    n_pos = int(members.sum())
    n_neg = len(members) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)  # average ranks at ties
    return float((ranks[members].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tpr_at_fpr(data: np.ndarray, budget: float) -> float:
    """The largest TPR whose FPR is at most `budget` (one fixed rule, also at ties and tiny n): the ROC points
    at every distinct score threshold, as sklearn's `roc_curve(drop_intermediate=False)` lists them."""
    order = np.argsort(-data[:, 0], kind="stable")
    scores, members = data[order, 0], data[order, 1] > 0.5
    n_pos = int(members.sum())
    n_neg = len(members) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tpr = np.cumsum(members)[last_of_tie] / n_pos
    fpr = np.cumsum(~members)[last_of_tie] / n_neg
    allowed = tpr[fpr <= budget + 1e-12]
    return float(allowed.max()) if allowed.size else 0.0
