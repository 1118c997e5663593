"""The lm-eval bridge: an `lm_eval.api.model.LM` whose answers are the engine's, for one subject.

lm-eval drives the evaluation (prompts, few-shot, filters, metrics); every request it makes becomes a
ppeval `ScoreRequest`/`GenerateRequest`, so it goes through the engine's batches and the per-subject
cache. Used twice: once recording (to plan the requests) and once per subject replaying the answers.
lm-eval's own request cache is never used: it keys requests without the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lm_eval.api.model import LM

from harness.requests import GenerateRequest, GenerateResponse, Request, Response, ScoreRequest, ScoreResponse

Answer = Callable[[Request], Response]


def generate_request(context: str, gen_kwargs: dict[str, Any]) -> GenerateRequest:
    """lm-eval's generation arguments as a GenerateRequest (HFLM's defaults: 256 tokens, greedy)."""
    until = gen_kwargs.get("until") or []
    if isinstance(until, str):
        until = [until]
    sample = bool(gen_kwargs.get("do_sample", False))
    return GenerateRequest(
        prompt=context,
        max_new_tokens=int(gen_kwargs.get("max_gen_toks", 256)),
        temperature=float(gen_kwargs.get("temperature", 1.0)) if sample else 0.0,
        top_p=float(gen_kwargs.get("top_p", 1.0)) if sample else 1.0,
        stop=tuple(until),
    )


class BridgeLM(LM):
    """Answers lm-eval's requests with `answer(request)`: recorded placeholders or a subject's responses."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self._answer = answer

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out = []
        for instance in requests:
            context, continuation = instance.args
            response = self._answer(ScoreRequest(context, continuation))
            assert isinstance(response, ScoreResponse)
            out.append((response.total_logprob, response.is_greedy))
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        out = []
        for instance in requests:
            (text,) = instance.args
            response = self._answer(ScoreRequest("", text))  # after the BOS/EOS prefix token, as HFLM does
            assert isinstance(response, ScoreResponse)
            out.append(response.total_logprob)
        return out

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out = []
        for instance in requests:
            context, gen_kwargs = instance.args
            response = self._answer(generate_request(context, dict(gen_kwargs)))
            assert isinstance(response, GenerateResponse)
            out.append(response.text)
        return out


def recording_answer(sink: dict[str, Request]) -> Answer:
    """Records every request and answers with a placeholder, for planning."""

    def answer(request: Request) -> Response:
        sink.setdefault(request.key, request)
        if isinstance(request, ScoreRequest):
            n = max(1, len(request.continuation.split()))
            return ScoreResponse(tuple(-1.0 for _ in range(n)), tuple(False for _ in range(n)))
        return GenerateResponse(text="", n_tokens=0)

    return answer
