"""Backends: the one seam between the runner and whatever answers requests.

The runner reads only the `Backend` protocol (and never imports torch itself: a fully cached run needs no
model). `hf` is the transformers engine in this process (`harness.engine`), `server` an OpenAI-compatible HTTP
endpoint, `vllm` an in-process vLLM engine; `harness.testing.FakeBackend` is a deterministic, torch-free one for
tests. All of them render and tokenize requests through `harness.prompts`, so a score request means the same
tokens on every backend.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harness.errors import InputError
from harness.requests import EngineSettings, Request, Response

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.subjects import Subject

#: Called with every finished batch: the subject, the requests answered and their responses (same order).
Sink = Callable[["Subject", Sequence[Request], Sequence[Response]], None]
#: What one `serve` call is asked: each subject with the requests it must answer.
Work = Sequence[tuple["Subject", Sequence[Request]]]
#: environment() keys that also go into the scorecard's `run.env` (the rest is `run.engine`)
ENV_KEYS = ("device", "torch", "transformers", "peft", "vllm")


@dataclass(frozen=True)
class Capabilities:
    """What a backend can compute; a metric that needs what it cannot is missing with the reason."""

    prompt_logprobs: bool = True  # teacher-forced log-probs of a continuation (every score request)
    vocab_stats: bool = True  # E_p[log p] and Var_p[log p] over the whole vocabulary per position (Min-K%++)
    seeded_sampling: bool = True  # a sampled generation is reproducible from its seed
    mixed_subjects: bool = False  # several subjects' requests in one batch
    reasons: Mapping[str, str] = field(default_factory=dict)  # capability -> why it is missing

    def why_not(self, capability: str) -> str:
        """The reason a capability is missing, for the scorecard."""
        return self.reasons.get(capability, f"the backend cannot compute {capability.replace('_', ' ')}")

    def as_strings(self) -> dict[str, str]:
        """Provenance form: capability -> "yes" / "no: <reason>"."""
        names = ("prompt_logprobs", "vocab_stats", "seeded_sampling", "mixed_subjects")
        return {f"capability.{n}": "yes" if getattr(self, n) else f"no: {self.why_not(n)}" for n in names}


@runtime_checkable
class Backend(Protocol):
    """Answers score and generate requests for subjects of one base model."""

    kind: str

    def settings(self) -> EngineSettings:
        """Everything besides a subject's weights that can change a response (the cache key), without loading."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    def subjects(self, config: RunConfig) -> list[Subject]:
        """The base (first) and every subject, validated and identified by a content hash (no model loaded)."""
        ...

    def serve(self, work: Work, sink: Sink) -> dict[str, list[str]]:
        """Answer every subject's requests, handing each finished batch to `sink`; returns notes per subject.
        A backend without `mixed_subjects` serves one subject at a time, in the order given."""
        ...

    def environment(self) -> dict[str, str]:
        """Provenance (the scorecard's `run.engine`): the backend, its settings, library versions, device."""
        ...

    def close(self) -> None:
        """Release the model or connections; the backend may be used again afterwards (it reloads)."""
        ...


def package_version(name: str) -> str:
    """An installed distribution's version without importing it (importing torch is what a cached run avoids)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def run_environment(engine: Mapping[str, str]) -> dict[str, str]:
    """The scorecard's `run.env`: Python, and the device and library versions out of the backend's provenance."""
    return {"python": platform.python_version(), **{k: engine[k] for k in ENV_KEYS if k in engine}}


def make_backend(config: RunConfig, engine_factory: Callable[[RunConfig], Any] | None = None) -> Backend:
    """The backend `[backend] kind` names (`engine_factory`: a custom engine for `hf`, as tests use)."""
    kind = config.backend.kind
    if engine_factory is not None and kind != "hf":
        raise InputError(f"an engine factory only applies to [backend] kind = \"hf\", not {kind!r}")
    if kind == "hf":
        from harness.backends.hf import HFBackend

        return HFBackend(config, engine_factory=engine_factory)
    if kind == "server":
        from harness.backends.server import ServerBackend

        return ServerBackend(config)
    from harness.backends.vllm import VLLMBackend

    return VLLMBackend(config)
