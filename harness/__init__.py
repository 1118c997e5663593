"""ppeval: a personalization-privacy evaluation harness for fine-tuned language models.

The public API: load a run config, run it, read and gate scorecards, and the suite protocol (with its
conformance check) that built-in and third-party suites implement. Names are imported on first use, so
`import harness` loads nothing heavy: a CI gate step needs neither torch nor the suites' libraries.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from harness.offline import go_offline

go_offline()  # before anything can import transformers, datasets or lm_eval

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "RunConfig": "harness.config", "load_config": "harness.config",
    "InputError": "harness.errors", "MissingData": "harness.errors", "PPEvalError": "harness.errors",
    "RunFailure": "harness.errors",
    "apply_policy": "harness.gates", "load_policy": "harness.gates",
    "describe_suites": "harness.registry", "get_suite": "harness.registry",
    "GenerateRequest": "harness.requests", "GenerateResponse": "harness.requests",
    "ScoreRequest": "harness.requests", "ScoreResponse": "harness.requests",
    "RunResult": "harness.runner", "run_evaluation": "harness.runner",
    "Scorecard": "harness.scorecard", "read_scorecard": "harness.scorecard",
    "Estimate": "harness.stats", "Observations": "harness.stats", "estimate": "harness.stats",
    "Responses": "harness.suite", "Suite": "harness.suite", "SuiteContext": "harness.suite",
    "SuiteOptions": "harness.suite", "SuiteOutcome": "harness.suite", "SuitePlan": "harness.suite",
    "file_sha256": "harness.suite", "parse_options": "harness.suite",
    "check_suite": "harness.testing",
}

__all__ = [
    "Estimate",
    "GenerateRequest",
    "GenerateResponse",
    "InputError",
    "MissingData",
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
    "SuiteOptions",
    "SuiteOutcome",
    "SuitePlan",
    "apply_policy",
    "check_suite",
    "describe_suites",
    "estimate",
    "file_sha256",
    "get_suite",
    "load_config",
    "load_policy",
    "parse_options",
    "read_scorecard",
    "run_evaluation",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names resolve lazily
    from harness.config import RunConfig, load_config
    from harness.errors import InputError, MissingData, PPEvalError, RunFailure
    from harness.gates import apply_policy, load_policy
    from harness.registry import describe_suites, get_suite
    from harness.requests import GenerateRequest, GenerateResponse, ScoreRequest, ScoreResponse
    from harness.runner import RunResult, run_evaluation
    from harness.scorecard import Scorecard, read_scorecard
    from harness.stats import Estimate, Observations, estimate
    from harness.suite import (
        Responses,
        Suite,
        SuiteContext,
        SuiteOptions,
        SuiteOutcome,
        SuitePlan,
        file_sha256,
        parse_options,
    )
    from harness.testing import check_suite
