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


def _fdr_run(n_null: int, effect: float, seed: int = 0):
    """A run with one subject: `n_null` metrics where it equals the base in distribution, plus one planted shift."""
    from harness.scorecard import MetricResult, SuiteResult, apply_fdr

    rng = np.random.default_rng(seed)
    metrics = {}
    for i in range(n_null + 1):
        base = rng.normal(0, 1, size=200)
        other = base + rng.normal(0, 1, size=200) + (effect if i == n_null else 0.0)
        est = estimate(Observations({"base": base, "s": other}, higher_is_better=False), n_resamples=400, seed=i)
        metrics[f"m{i}"] = MetricResult.from_estimate(est["s"])
    results = {"s": {"suite": SuiteResult(suite_version="1", data_sha256="0" * 64, metrics=metrics)}}
    sizes = apply_fdr(results, lambda subject, suite, key: subject)
    return metrics, sizes


def test_fdr_clears_the_chance_flags_of_a_control_but_keeps_a_planted_effect():
    metrics, sizes = _fdr_run(n_null=300, effect=1.0)
    deltas = [m.delta_vs_base for k, m in metrics.items() if k != "m300"]
    raw_flags = sum(d.significant for d in deltas)
    assert sizes == {"s": 301}
    assert raw_flags >= 5  # at 95% a few hundred null deltas give chance flags ...
    assert not any(d.discovered for d in deltas)  # ... which the false-discovery control removes
    planted = metrics["m300"].delta_vs_base
    assert planted.significant and planted.discovered and planted.q_value < 0.001


def test_q_values_are_scipys_benjamini_hochberg_of_the_stored_p_values():
    from harness.stats import benjamini_hochberg

    metrics, _ = _fdr_run(n_null=40, effect=0.5, seed=3)
    ps = [m.delta_vs_base.p_value for m in metrics.values()]
    qs = [m.delta_vs_base.q_value for m in metrics.values()]
    assert np.allclose(qs, scipy_stats.false_discovery_control(ps, method="bh"))
    with_nan = benjamini_hochberg([0.01, float("nan"), 0.04])  # a NaN p-value is left out of the family
    assert np.isnan(with_nan[1]) and np.allclose([with_nan[0], with_nan[2]], [0.02, 0.04])


def test_the_p_value_agrees_with_the_interval_for_a_symmetric_statistic():
    rng = np.random.default_rng(5)
    base = rng.normal(0, 1, size=500)
    for shift, expect in ((0.0, False), (0.3, True)):
        d = estimate(Observations({"base": base, "s": base + shift + rng.normal(0, 1, 500)},
                                  higher_is_better=True), n_resamples=1000)["s"].delta_vs_base
        assert d.significant == expect and (d.p_value < 0.05) == expect


def test_a_version_1_scorecard_still_reads_and_is_judged_by_its_interval(tmp_path):
    import json

    from harness.scorecard import read_scorecard

    delta = {"value": 0.2, "ci_low": 0.1, "ci_high": 0.3, "significant": True}
    v1 = {"schema_version": 1,
          "run": {"id": "r", "started_at": "t", "finished_at": "t", "harness_version": "0", "config_sha256": "0",
                  "seed": 0, "env": {}},
          "subjects": [{"name": "base", "kind": "base", "path": "b", "sha256": "0"},
                       {"name": "a", "kind": "adapter", "path": "a", "sha256": "1"}],
          "results": {"a": {"s": {"suite_version": "1", "data_sha256": "0", "metrics": {
              "m": {"value": 1.0, "ci_low": 0.9, "ci_high": 1.1, "n": 10, "higher_is_better": False,
                    "delta_vs_base": delta}}}}}}
    path = tmp_path / "scorecard.json"
    path.write_text(json.dumps(v1))
    card = read_scorecard(path)
    d = card.metric("a", "s.m").delta_vs_base
    assert card.schema_version == 1 and d.q_value is None and d.discovered
