"""Requests that suites ask of the engine, and the responses it gives back, as plain data.

Suites never touch torch: they describe what they need as `ScoreRequest`/`GenerateRequest` values and
read `ScoreResponse`/`GenerateResponse` values. Every request has a content hash, which is how the
runner deduplicates requests across suites and keys the on-disk cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
#: A prompt is plain text, or chat turns that the engine renders with the tokenizer's chat template
#: when `prompt_format = "chat"` (and as "role: content" lines when it is "plain").
Prompt = str | tuple[tuple[Role, str], ...]


def render_plain(prompt: Prompt) -> str:
    """A prompt as plain text: strings as they are, chat turns as "role: content" lines then "assistant:".

    This is what the engine feeds the model when `prompt_format = "plain"` (or the tokenizer has no
    chat template); fine-tuning data for such a model should use the same rendering.
    """
    if isinstance(prompt, str):
        return prompt
    return "".join(f"{role}: {content}\n" for role, content in prompt) + "assistant:"


def _hash(kind: str, payload: dict[str, Any]) -> str:
    blob = json.dumps([kind, payload], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ScoreRequest:
    """Per-token log-probabilities of `continuation` given `context` (teacher forcing).

    An empty context scores the continuation after the tokenizer's BOS (or EOS) token, so the first
    continuation token is predicted too.
    """

    context: Prompt
    continuation: str
    vocab_stats: bool = False  # also return E_p[log p] and Var_p[log p] per position (Min-K%++)

    @cached_property
    def key(self) -> str:
        return _hash("score", asdict(self))


@dataclass(frozen=True)
class GenerateRequest:
    """A continuation of `prompt`: greedy when `temperature == 0`, else seeded sampling."""

    prompt: Prompt
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()

    @cached_property
    def key(self) -> str:
        return _hash("generate", asdict(self))


Request = ScoreRequest | GenerateRequest


@dataclass(frozen=True)
class ScoreResponse:
    """Log-probabilities of each continuation token and whether greedy decoding picks it."""

    token_logprobs: tuple[float, ...]
    greedy: tuple[bool, ...]
    vocab_mean: tuple[float, ...] | None = None
    vocab_var: tuple[float, ...] | None = None
    truncated: bool = False  # the request was longer than the model's context and was cut to its last tokens

    @property
    def total_logprob(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)

    @property
    def is_greedy(self) -> bool:
        return all(self.greedy)


@dataclass(frozen=True)
class GenerateResponse:
    """Generated text (stop string excluded), its token count and why decoding ended."""

    text: str
    n_tokens: int
    finish_reason: Literal["stop", "eos", "length"] = "length"
    truncated: bool = False  # the prompt was cut to its last tokens to leave room for the new ones


Response = ScoreResponse | GenerateResponse


@dataclass(frozen=True)
class EngineSettings:
    """Everything besides the subject's weights that can change a response; part of the cache key."""

    dtype: str = "float32"
    prompt_format: Literal["chat", "plain"] = "plain"
    max_length: int = 2048
    engine_version: str = "1"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return _hash("settings", asdict(self))


def response_to_json(response: Response) -> str:
    # field by field: dataclasses.asdict deep-copies every float of the log-prob tuples
    if isinstance(response, ScoreResponse):
        data = {"kind": "score", "token_logprobs": response.token_logprobs, "greedy": response.greedy,
                "vocab_mean": response.vocab_mean, "vocab_var": response.vocab_var}
    else:
        data = {"kind": "generate", "text": response.text, "n_tokens": response.n_tokens,
                "finish_reason": response.finish_reason}
    if response.truncated:  # only when set, so that entries cached before the field existed read the same
        data["truncated"] = True
    return json.dumps(data, ensure_ascii=False)


def response_from_json(blob: str) -> Response:
    data = json.loads(blob)
    kind = data.pop("kind")
    if kind == "score":
        for name in ("token_logprobs", "greedy", "vocab_mean", "vocab_var"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return ScoreResponse(**data)
    return GenerateResponse(**data)
