"""`check_suite`: the conformance checks any suite, built-in or third-party, is run through.

Like scikit-learn's `check_estimator`, they exercise the protocol without a model: the suite plans, gets
synthetic responses for two subjects whose answers are identical, and each named check (`CHECKS`) tests one
rule: name and version, metric declarations, plan shape and determinism, outcome shape, that `score()`
emits only declared keys in their declared direction, and that an identical subject gets deltas of exactly
zero. `parametrize_with_checks` makes one pytest case per suite × check; `check_suite` runs them all.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.backends.fake import FakeBackend as FakeBackend  # a torch-free backend for runner/CLI/suite tests
from harness.metrics import MetricSpec, find_spec, suite_specs, undeclared
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


class _Run:
    """One suite built from options, planned and scored once on synthetic responses, shared by the checks."""

    SUBJECTS = ("base", "twin")

    def __init__(self, suite_cls: type[Suite], options: Mapping[str, Any], context: SuiteContext) -> None:
        self.suite_cls, self.options, self.context = suite_cls, dict(options), context
        self._suite: Suite | None = None
        self._plan: SuitePlan | None = None
        self._outcome: SuiteOutcome | None = None

    @property
    def suite(self) -> Suite:
        if self._suite is None:
            self._suite = self.suite_cls(self.options, self.context)
        return self._suite

    @property
    def plan(self) -> SuitePlan:
        if self._plan is None:
            self._plan = self.suite.plan()
            _check(isinstance(self._plan, SuitePlan), "plan() must return a SuitePlan")
        return self._plan

    @property
    def outcome(self) -> SuiteOutcome:
        if self._outcome is None:
            rng = random.Random(0)
            answers = {r.key: synthetic_response(r, rng) for r in self.plan.requests}
            outcome = self.suite.score(Responses(list(self.SUBJECTS), {"base": answers, "twin": dict(answers)}))
            _check(isinstance(outcome, SuiteOutcome), "score() must return a SuiteOutcome")
            self._outcome = outcome
        return self._outcome


def check_name(run: _Run) -> None:
    """The suite has a lowercase identifier `name` and a string `version`."""
    cls = run.suite_cls
    _check(isinstance(getattr(cls, "name", None), str) and bool(cls.name), "suite needs a `name`")
    _check(re.fullmatch(r"[a-z][a-z0-9_]*", cls.name) is not None, "`name` must be a lowercase identifier")
    _check(isinstance(getattr(cls, "version", None), str), "suite needs a string `version`")


def check_declares_metrics(run: _Run) -> None:
    """`metrics` is a non-empty sequence of `MetricSpec` with distinct keys."""
    declared = getattr(run.suite_cls, "metrics", None)
    _check(isinstance(declared, (tuple, list)) and bool(declared),
           "suite needs a `metrics` class attribute: a tuple of harness.metrics.MetricSpec")
    _check(all(isinstance(s, MetricSpec) for s in declared), "`metrics` must hold MetricSpec values only")
    keys = [s.key for s in declared]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    _check(not twice, f"`metrics` declares a key twice: {twice}")


def check_protocol(run: _Run) -> None:
    """The suite implements plan() and score()."""
    _check(isinstance(run.suite, Suite), "suite does not implement plan() and score()")


def check_plan(run: _Run) -> None:
    """plan() returns ScoreRequest/GenerateRequest values and a sha256 of its data."""
    plan = run.plan
    _check(all(isinstance(r, ScoreRequest | GenerateRequest) for r in plan.requests),
           "plan().requests must hold ScoreRequest/GenerateRequest values only")
    _check(re.fullmatch(r"[0-9a-f]{64}", plan.data_sha256) is not None, "data_sha256 must be a sha256 hex digest")


def check_plan_is_deterministic(run: _Run) -> None:
    """Two suites built from the same options plan the same requests."""
    again = run.suite_cls(run.options, run.context).plan()
    _check([r.key for r in run.plan.requests] == [r.key for r in again.requests],
           "plan() is not deterministic: two suites built from the same options planned different requests")


def check_score(run: _Run) -> None:
    """score() returns Observations for known subjects only, and notes for known subjects only."""
    for key, observations in run.outcome.metrics.items():
        _check(isinstance(observations, Observations), f"metric {key!r}: expected Observations")
        _check(set(observations.per_subject) <= set(_Run.SUBJECTS),
               f"metric {key!r}: observations for unknown subjects")
        _check(isinstance(observations.higher_is_better, bool), f"metric {key!r}: higher_is_better must be a bool")
    for subject in run.outcome.notes:
        _check(subject == "*" or subject in _Run.SUBJECTS, f"notes for an unknown subject {subject!r}")


def check_emits_only_declared_keys(run: _Run) -> None:
    """Every metric key score() emits or reports missing is covered by the suite's declarations."""
    specs = suite_specs(run.suite_cls)
    stray = undeclared(specs, [*run.outcome.metrics, *run.outcome.missing])
    _check(not stray, f"score() emitted undeclared metric key(s) {stray}; declare them in `metrics`")


def check_directions_match(run: _Run) -> None:
    """A one-sided declaration agrees with the Observations' `higher_is_better`."""
    specs = suite_specs(run.suite_cls)
    for key, observations in run.outcome.metrics.items():
        spec = find_spec(specs, key)
        if spec is not None and spec.higher_is_better is not None:
            _check(spec.higher_is_better == observations.higher_is_better,
                   f"metric {key!r}: declared {spec.direction!r} is better, but its Observations say "
                   f"higher_is_better={observations.higher_is_better}")


def check_identical_subject_has_zero_delta(run: _Run) -> None:
    """A subject whose answers equal the base's gets deltas of exactly 0."""
    for key, observations in run.outcome.metrics.items():
        twin = estimate(observations, n_resamples=200, seed=0).get("twin")
        if twin is not None and twin.delta_vs_base is not None:
            _check(twin.delta_vs_base.value == 0.0,
                   f"metric {key!r}: a subject identical to the base has delta {twin.delta_vs_base.value}, not 0")


Check = Callable[[_Run], None]
CHECKS: tuple[Check, ...] = (check_name, check_declares_metrics, check_protocol, check_plan,
                             check_plan_is_deterministic, check_score, check_emits_only_declared_keys,
                             check_directions_match, check_identical_subject_has_zero_delta)


def suite_checks(
    suite_cls: type[Suite], options: Mapping[str, Any] | None = None, context: SuiteContext | None = None
) -> list[tuple[str, Callable[[], None]]]:
    """(check name, callable) for every conformance check, sharing one plan and one scoring of the suite."""
    run = _Run(suite_cls, options or {}, context or SuiteContext())
    return [(check.__name__, functools.partial(check, run)) for check in CHECKS]


def parametrize_with_checks(suites: Sequence[type[Suite] | tuple[type[Suite], Mapping[str, Any]]],
                            context: SuiteContext | None = None) -> Any:
    """A pytest parametrize decorator: one test case per suite × check (as scikit-learn's), e.g.

        @parametrize_with_checks([MySuite])
        def test_my_suite(suite, check):
            check()
    """
    import pytest

    params = []
    for entry in suites:
        cls, options = entry if isinstance(entry, tuple) else (entry, {})
        for name, check in suite_checks(cls, options, context):
            params.append(pytest.param(cls, check, id=f"{getattr(cls, 'name', cls.__name__)}-{name}"))
    return pytest.mark.parametrize(("suite", "check"), params)


def check_suite(
    suite_cls: type[Suite], options: Mapping[str, Any] | None = None, context: SuiteContext | None = None
) -> SuiteOutcome:
    """Run every conformance check on `suite_cls`; raises `SuiteConformanceError` naming the check and the rule.
    Returns the synthetic outcome for further assertions."""
    run = _Run(suite_cls, options or {}, context or SuiteContext())
    for check in CHECKS:
        try:
            check(run)
        except SuiteConformanceError as exc:
            raise SuiteConformanceError(f"{check.__name__}: {exc}") from None
    return run.outcome
