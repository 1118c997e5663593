"""The accuracy suite's metric declarations (read by gates, reports, the annex and docs/suites.md).

Keys are `<task>.<metric>` (and `.<filter>` when a task has several filters) for whatever lm-eval tasks the
config names, so one pattern covers them; which way is better is lm-eval's own `higher_is_better` per metric.
"""

from __future__ import annotations

from harness.metrics import MetricSpec

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("*", "an lm-eval task metric as lm-eval defines it (`<task>.<metric>`, e.g. `arc_easy.acc`), "
               "computed on the same documents for every subject", direction="observed",
               obligations=("ai_act_art15", "nist_measure_2_3"), plot="bars"),
)
