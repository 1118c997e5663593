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
from sklearn.metrics import roc_auc_score, roc_curve

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
        "min_k_pp": min_k_pp_score(response),
        "ref_base": mean_nll(base) - mean_nll(response),
    }


def auc(data: np.ndarray) -> float:
    """ROC AUC of rows [score, is_member]."""
    return float(roc_auc_score(data[:, 1], data[:, 0]))


def tpr_at_fpr(data: np.ndarray, budget: float) -> float:
    """The largest TPR whose FPR is at most `budget` (one fixed rule, also at ties and tiny n)."""
    fpr, tpr, _ = roc_curve(data[:, 1], data[:, 0], drop_intermediate=False)
    allowed = tpr[fpr <= budget + 1e-12]
    return float(allowed.max()) if allowed.size else 0.0
