"""A deterministic, torch-free backend for tests of the runner, the CLI and suites (`harness.testing.FakeBackend`).

Tokens are whitespace-separated words. A response depends only on the request and on the subject's `shift`
(0 for subjects not named in `shifts`: they answer exactly as the base), so tests can plant a difference.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING

from harness.backends import Capabilities, Sink, Work
from harness.requests import EngineSettings, GenerateRequest, GenerateResponse, Request, Response, ScoreResponse

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.subjects import Subject

_WORDS = ("the", "order", "account", "please", "thanks", "refund", "today", "help", "reset", "password")


class FakeBackend:
    """Answers every request from a hash of it: no model, no torch; counts what it served per subject."""

    kind = "fake"

    def __init__(self, *, shifts: Mapping[str, float] | None = None, capabilities: Capabilities | None = None,
                 max_length: int = 2048, prompt_format: str = "plain", batch_size: int = 8) -> None:
        self.shifts = dict(shifts or {})
        self._capabilities = capabilities or Capabilities(mixed_subjects=True)
        self.max_length = max_length
        self.prompt_format = prompt_format
        self.batch_size = batch_size
        self.served: dict[str, int] = {}

    def settings(self) -> EngineSettings:
        return EngineSettings(dtype="none", prompt_format=self.prompt_format,  # type: ignore[arg-type]
                              max_length=self.max_length, engine_version="fake-1", extra={"backend": "fake"})

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def subjects(self, config: RunConfig) -> list[Subject]:
        from harness.subjects import resolve_subjects

        return resolve_subjects(config)

    def respond(self, subject: Subject, request: Request) -> Response:
        """The response `subject` gives to `request`, the same on every call."""
        shift = self.shifts.get(subject.name, 0.0)
        rng = random.Random(hashlib.sha256(f"{request.key}:{shift}".encode()).digest())
        if isinstance(request, GenerateRequest):
            prompt_words = len(str(request.prompt).split())
            words = [rng.choice(_WORDS) for _ in range(min(request.max_new_tokens, rng.randint(2, 12)))]
            return GenerateResponse(" ".join(words), len(words), "length",
                                    truncated=prompt_words > max(self.max_length - request.max_new_tokens, 1))
        context = len(str(request.context).split()) if request.context else 1
        n = len(request.continuation.split()) or 1
        truncated = context + n > self.max_length - 1
        n = min(n, self.max_length)
        base = random.Random(hashlib.sha256(request.key.encode()).digest())
        logprobs = tuple(-base.uniform(0.05, 6.0) - shift * rng.uniform(0.5, 1.5) for _ in range(n))
        stats = request.vocab_stats and self._capabilities.vocab_stats
        return ScoreResponse(logprobs, tuple(lp > -0.7 for lp in logprobs),
                             tuple(-base.uniform(1, 4) for _ in range(n)) if stats else None,
                             tuple(base.uniform(0.1, 2) for _ in range(n)) if stats else None, truncated=truncated)

    def serve(self, work: Work, sink: Sink) -> dict[str, list[str]]:
        notes: dict[str, list[str]] = {}
        for subject, requests in work:
            for start in range(0, len(requests), self.batch_size):
                batch = list(requests[start : start + self.batch_size])
                sink(subject, batch, [self.respond(subject, r) for r in batch])
            self.served[subject.name] = self.served.get(subject.name, 0) + len(requests)
            notes[subject.name] = []
        return notes

    def environment(self) -> dict[str, str]:
        return {"backend": "fake", "device": "none", **self.capabilities.as_strings()}

    def close(self) -> None:
        """Nothing to release."""
