"""The suite protocol: a suite plans requests as plain data and scores all subjects' responses.

A suite never touches torch. It is built from its `[suites.<name>]` options and a `SuiteContext`,
says which requests it needs (`plan`), and turns every subject's responses, the base's included,
into per-item `Observations` (`score`); the harness turns those into values, intervals and deltas.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.config import CONFIG_SOURCE, DataConfig, format_validation_error
from harness.errors import InputError
from harness.pii import show_pii_requested
from harness.requests import GenerateRequest, GenerateResponse, Request, Response, ScoreRequest, ScoreResponse
from harness.stats import Observations


@dataclass(frozen=True)
class SuiteContext:
    """What a suite may know when it plans: the run's data files, seed, item limit, prompt format, and
    whether raw PII may appear in samples (`--show-pii`; by default from `harness.pii.showing_pii`)."""

    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    limit: int | None = None
    prompt_format: str = "plain"
    show_pii: bool = field(default_factory=show_pii_requested)


@dataclass(frozen=True)
class SuitePlan:
    """The requests every subject must answer for this suite, and the hash of the data behind them."""

    requests: tuple[Request, ...]
    data_sha256: str


class Responses:
    """Every subject's responses by request key; `subjects` lists names with the base first."""

    def __init__(self, subjects: Sequence[str], by_subject: Mapping[str, Mapping[str, Response]]) -> None:
        self.subjects = list(subjects)
        self._by_subject = by_subject

    def get(self, subject: str, request: Request) -> Response:
        return self._by_subject[subject][request.key]

    def scored(self, subject: str, request: ScoreRequest) -> ScoreResponse:
        """`get` for a score request, typed as its response."""
        response = self.get(subject, request)
        assert isinstance(response, ScoreResponse)
        return response

    def generated(self, subject: str, request: GenerateRequest) -> GenerateResponse:
        """`get` for a generate request, typed as its response."""
        response = self.get(subject, request)
        assert isinstance(response, GenerateResponse)
        return response


@dataclass
class SuiteOutcome:
    """What `score` returns: per-item observations per metric key, notes per subject ("*": all),
    per-item samples, and the metrics that could not be computed with the reason (never a 0), for every
    subject (`missing`) or for one (`missing_by_subject`, left out of that metric's observations)."""

    metrics: dict[str, Observations] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # metric key -> why it could not be computed
    missing_by_subject: dict[str, dict[str, str]] = field(default_factory=dict)  # subject -> key -> why (that one)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # subject -> JSON data for plots
    samples: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class Suite(Protocol):
    """A test suite plugin (built-in, or third-party through the `ppeval.suites` entry points). A suite may also
    give its options model as the class attribute `options_model` (a `SuiteOptions`), so that `ppeval check`
    validates `[suites.<name>]` without constructing the suite (which may read data or load libraries)."""

    name: ClassVar[str]
    version: ClassVar[str]

    def __init__(self, options: Mapping[str, Any], context: SuiteContext) -> None: ...

    def plan(self) -> SuitePlan: ...

    def score(self, responses: Responses) -> SuiteOutcome: ...


OptionsT = TypeVar("OptionsT", bound=BaseModel)


class SuiteOptions(BaseModel):
    """Base for a suite's options model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_options(suite: str, model: type[OptionsT], options: Mapping[str, Any]) -> OptionsT:
    """Validate `[suites.<suite>]`; errors name the key, e.g. `suites.perplexity.text_file`."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        source = CONFIG_SOURCE.get()
        message = format_validation_error(source, exc, model)
        raise InputError(message.replace(f"{source}: `", f"{source}: `suites.{suite}.").replace(
            f"{source}: unknown key `", f"{source}: unknown key `suites.{suite}.")) from None


def file_sha256(*paths: Path) -> str:
    """sha256 over the bytes of data files, for the scorecard's `data_sha256`."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()
