"""The perplexity suite's metric declarations (read by gates, reports, the annex and docs/suites.md)."""

from __future__ import annotations

from harness.metrics import MetricSpec

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("mean_nll", "mean negative log-likelihood per token on reference text the fine-tunes never saw; "
               "a rise against the base is forgetting", direction="lower", unit="nats/token",
               obligations=("ai_act_art15", "nist_measure_2_5"), rank_samples_by="nll",
               finding="reference-text NLL {delta} nats/token",
               material=0.05),  # 0.05 nats/token = perplexity x1.05: any fine-tune moves NLL by less than that
    MetricSpec("perplexity", "exp(mean_nll): the same figure as perplexity", direction="lower", unit="perplexity",
               headline=False, obligations=("ai_act_art15", "nist_measure_2_5"), rank_samples_by="nll"),
)
