"""Perplexity: mean NLL per token of each subject on a reference text set (a forgetting signal).

Reference texts are the run's `data.holdout` (what the fine-tunes never saw), or `text_file`, or
the general-text set shipped in `data/general.jsonl`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.data import read_text_records
from harness.requests import ScoreRequest
from harness.stats import Observations
from harness.suite import Responses, SuiteContext, SuiteOptions, SuiteOutcome, SuitePlan, file_sha256, parse_options
from suites.perplexity.metrics_spec import METRICS

SHIPPED_TEXTS = Path(__file__).parent / "data" / "general.jsonl"


class PerplexityOptions(SuiteOptions):
    text_file: Path | None = None
    max_items: int = 500


def _token_weighted_nll(rows: np.ndarray) -> float:
    """Total NLL over total tokens (rows: [nll_sum, n_tokens]), so long texts weigh by length."""
    return float(rows[:, 0].sum() / max(rows[:, 1].sum(), 1))


def _perplexity(rows: np.ndarray) -> float:
    return math.exp(_token_weighted_nll(rows))


class PerplexitySuite:
    """Mean NLL and perplexity on reference text; deltas against the base show forgetting."""

    name: ClassVar[str] = "perplexity"
    version: ClassVar[str] = "1"
    options_model: ClassVar[type[PerplexityOptions]] = PerplexityOptions
    metrics = METRICS  # declarations: metrics_spec.py

    def __init__(self, options: Mapping[str, Any], context: SuiteContext) -> None:
        self.options = parse_options(self.name, self.options_model, options)
        self.path = self.options.text_file or context.data.holdout or SHIPPED_TEXTS
        records = read_text_records(self.path)
        limit = min(self.options.max_items, context.limit or self.options.max_items)
        self.records = records[:limit]
        self.requests = [ScoreRequest(r.context, r.text) for r in self.records]

    def plan(self) -> SuitePlan:
        return SuitePlan(tuple(self.requests), file_sha256(self.path))

    def score(self, responses: Responses) -> SuiteOutcome:
        per_subject: dict[str, np.ndarray] = {}
        outcome = SuiteOutcome()
        for subject in responses.subjects:
            rows = []
            for record, request in zip(self.records, self.requests, strict=True):
                response = responses.scored(subject, request)
                nll = -response.total_logprob
                rows.append((nll, response.n_tokens))
                outcome.samples.append(
                    {"subject": subject, "line": record.line, "nll": nll, "tokens": response.n_tokens}
                )
            per_subject[subject] = np.array(rows, dtype=float)
        outcome.metrics["mean_nll"] = Observations(per_subject, higher_is_better=False, statistic=_token_weighted_nll)
        outcome.metrics["perplexity"] = Observations(per_subject, higher_is_better=False, statistic=_perplexity)
        if self.path == SHIPPED_TEXTS:
            outcome.notes["*"] = ["reference text: the shipped general-text set (no data.holdout given)"]
        return outcome
