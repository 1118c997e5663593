"""ppeval: a personalization-privacy evaluation harness for fine-tuned language models.

The public API: load a run config, run it, read and gate scorecards, and the suite protocol that
built-in and third-party suites implement.
"""
# ruff: noqa: E402  (the offline flags must be set before the imports below)

from harness.offline import go_offline

go_offline()  # before anything below can import transformers, datasets or lm_eval

from harness.config import RunConfig, load_config
from harness.errors import InputError, PPEvalError, RunFailure
from harness.gates import apply_policy, load_policy
from harness.registry import describe_suites, get_suite
from harness.requests import GenerateRequest, GenerateResponse, ScoreRequest, ScoreResponse
from harness.runner import RunResult, run_evaluation
from harness.scorecard import Scorecard, read_scorecard
from harness.stats import Estimate, Observations, estimate
from harness.suite import Responses, Suite, SuiteContext, SuiteOutcome, SuitePlan

__all__ = [
    "Estimate",
    "GenerateRequest",
    "GenerateResponse",
    "InputError",
    "Observations",
    "PPEvalError",
    "Responses",
    "RunConfig",
    "RunFailure",
    "RunResult",
    "ScoreRequest",
    "ScoreResponse",
    "Scorecard",
    "Suite",
    "SuiteContext",
    "SuiteOutcome",
    "SuitePlan",
    "apply_policy",
    "describe_suites",
    "estimate",
    "get_suite",
    "load_config",
    "load_policy",
    "read_scorecard",
    "run_evaluation",
]
