"""`check_suite`: the conformance check any suite, built-in or third-party, is run through.

Like scikit-learn's `check_estimator`, it exercises the protocol without a model: it plans, feeds
synthetic responses for two subjects whose answers are identical, and checks the outcome's shape,
determinism, and that an identical subject gets deltas of exactly zero against the base.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from harness.backends.fake import FakeBackend as FakeBackend  # a torch-free backend for runner/CLI/suite tests
from harness.requests import GenerateRequest, GenerateResponse, Request, Response, ScoreRequest, ScoreResponse
from harness.stats import Observations, estimate
from harness.suite import Responses, Suite, SuiteContext, SuiteOutcome, SuitePlan


class SuiteConformanceError(AssertionError):
    """A suite broke the protocol; the message says which rule."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SuiteConformanceError(message)


def synthetic_response(request: Request, rng: random.Random) -> Response:
    """A plausible response: one log-prob per whitespace token, or a short generated text."""
    if isinstance(request, ScoreRequest):
        n = max(1, len(request.continuation.split()))
        logprobs = tuple(-rng.uniform(0.05, 6.0) for _ in range(n))
        greedy = tuple(lp > -0.7 for lp in logprobs)
        if request.vocab_stats:
            return ScoreResponse(logprobs, greedy, tuple(-rng.uniform(1, 4) for _ in range(n)),
                                 tuple(rng.uniform(0.1, 2) for _ in range(n)))
        return ScoreResponse(logprobs, greedy)
    words = ["the", "order", "account", "please", "thanks", "refund", "today", "help"]
    text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
    return GenerateResponse(text=text, n_tokens=len(text.split()), finish_reason="length")


def check_suite(
    suite_cls: type[Suite], options: Mapping[str, Any] | None = None, context: SuiteContext | None = None
) -> SuiteOutcome:
    """Run the protocol checks on `suite_cls`; raises `SuiteConformanceError` naming the broken rule."""
    options = dict(options or {})
    context = context or SuiteContext()
    _check(isinstance(getattr(suite_cls, "name", None), str) and bool(suite_cls.name), "suite needs a `name`")
    _check(re.fullmatch(r"[a-z][a-z0-9_]*", suite_cls.name) is not None, "`name` must be a lowercase identifier")
    _check(isinstance(getattr(suite_cls, "version", None), str), "suite needs a string `version`")
    suite = suite_cls(options, context)
    _check(isinstance(suite, Suite), "suite does not implement plan() and score()")
    plan = suite.plan()
    _check(isinstance(plan, SuitePlan), "plan() must return a SuitePlan")
    _check(all(isinstance(r, ScoreRequest | GenerateRequest) for r in plan.requests),
           "plan().requests must hold ScoreRequest/GenerateRequest values only")
    _check(re.fullmatch(r"[0-9a-f]{64}", plan.data_sha256) is not None, "data_sha256 must be a sha256 hex digest")
    again = suite_cls(options, context).plan()
    _check([r.key for r in plan.requests] == [r.key for r in again.requests],
           "plan() is not deterministic: two suites built from the same options planned different requests")

    rng = random.Random(0)
    answers = {r.key: synthetic_response(r, rng) for r in plan.requests}
    subjects = ["base", "twin"]
    outcome = suite.score(Responses(subjects, {"base": answers, "twin": dict(answers)}))
    _check(isinstance(outcome, SuiteOutcome), "score() must return a SuiteOutcome")
    for key, observations in outcome.metrics.items():
        _check(isinstance(observations, Observations), f"metric {key!r}: expected Observations")
        _check(set(observations.per_subject) <= set(subjects), f"metric {key!r}: observations for unknown subjects")
        _check(isinstance(observations.higher_is_better, bool), f"metric {key!r}: higher_is_better must be a bool")
        estimates = estimate(observations, n_resamples=200, seed=0)
        twin = estimates.get("twin")
        if twin is not None and twin.delta_vs_base is not None:
            _check(twin.delta_vs_base.value == 0.0,
                   f"metric {key!r}: a subject identical to the base has delta {twin.delta_vs_base.value}, not 0")
    for subject in outcome.notes:
        _check(subject == "*" or subject in subjects, f"notes for an unknown subject {subject!r}")
    return outcome
