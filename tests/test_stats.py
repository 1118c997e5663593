"""Bootstrap intervals and paired deltas."""

from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats

from harness.stats import Observations, estimate


def test_interval_matches_scipy_percentile_bootstrap_for_a_mean():
    rng = np.random.default_rng(1)
    values = rng.normal(2.0, 1.0, size=400)
    ours = estimate(Observations({"base": values}, higher_is_better=True), n_resamples=4000, seed=3)["base"]
    ref = scipy_stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile", random_state=3)
    assert ours.value == values.mean() and ours.n == 400
    assert abs(ours.ci_low - ref.confidence_interval.low) < 0.02
    assert abs(ours.ci_high - ref.confidence_interval.high) < 0.02


def test_a_subject_identical_to_the_base_has_zero_delta_and_is_not_significant():
    values = np.random.default_rng(0).random(200)
    est = estimate(Observations({"base": values, "twin": values.copy()}, higher_is_better=False))
    assert est["twin"].delta_vs_base.value == 0 and est["twin"].delta_vs_base.ci_low == 0
    assert not est["twin"].delta_vs_base.significant
    assert est["base"].delta_vs_base is None


def test_a_planted_shift_is_significant_and_pairing_narrows_the_interval():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, size=300)
    shifted = base + 0.1 + rng.normal(0, 0.05, size=300)  # small shift, strongly paired
    delta = estimate(Observations({"base": base, "s": shifted}, higher_is_better=True))["s"].delta_vs_base
    assert delta.significant and delta.ci_low > 0.05 and delta.ci_high < 0.15
    # unpaired intervals of the two means overlap widely: only pairing sees the shift
    est = estimate(Observations({"base": base, "s": shifted}, higher_is_better=True))
    assert est["s"].ci_low < est["base"].ci_high


def test_cluster_bootstrap_is_wider_when_items_share_a_template():
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(20), 10)
    values = rng.normal(0, 1, size=20)[clusters] + rng.normal(0, 0.1, size=200)  # template effect dominates
    naive = estimate(Observations({"base": values}, higher_is_better=True))["base"]
    clustered = estimate(Observations({"base": values}, higher_is_better=True, clusters=clusters))["base"]
    assert (clustered.ci_high - clustered.ci_low) > 2 * (naive.ci_high - naive.ci_low)


def test_stratified_resampling_keeps_both_classes_for_an_auc():
    from sklearn.metrics import roc_auc_score

    labels = np.array([1] * 3 + [0] * 50)
    scores = np.random.default_rng(0).random(53)
    data = np.column_stack([scores, labels])
    est = estimate(Observations({"base": data}, higher_is_better=True,
                                statistic=lambda d: roc_auc_score(d[:, 1], d[:, 0]), strata=labels))["base"]
    assert np.isfinite(est.ci_low) and np.isfinite(est.ci_high)
    assert est.value == roc_auc_score(labels, scores)


def test_same_seed_same_interval():
    values = np.random.default_rng(0).random(100)
    a = estimate(Observations({"base": values}, higher_is_better=True), seed=5)
    b = estimate(Observations({"base": values}, higher_is_better=True), seed=5)
    assert a == b
