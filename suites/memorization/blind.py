"""The blind baseline: a text-only member/non-member classifier that never sees the model.

If it separates members from non-members as well as the attacks do, the "membership signal" is a
distribution shift between the two sets (Das et al. 2024, "Blind Baselines Beat Membership
Inference Attacks for Foundation Models"), not memorization.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline


def blind_baseline_auc(texts: Sequence[str], labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Out-of-fold member probabilities from char n-gram TF-IDF + logistic regression (5-fold CV)."""
    folds = min(5, int(np.bincount(labels).min()))
    if folds < 2:
        return np.full(len(texts), 0.5)
    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True),
        LogisticRegression(max_iter=1000, C=1.0),
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, list(texts), labels, cv=cv, method="predict_proba")[:, 1]
