"""The engine: the only module that touches torch.

It loads the base once and activates one subject at a time: a LoRA adapter is merged into the base
weights (no LoRA overhead while scoring or decoding), a full fine-tune's weights are copied in, and
deactivation restores every touched weight from the base's memory-mapped safetensors rather than
subtracting the delta (which drifts in low precision). It serves score and generate requests in
length-sorted batches under a token budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from harness.backends.hf import hf_settings
from harness.errors import InputError
from harness.prompts import EncodedScore, PromptEncoder, finish_generation
from harness.requests import (
    EngineSettings,
    GenerateRequest,
    GenerateResponse,
    Prompt,
    ScoreRequest,
    ScoreResponse,
)
from harness.subjects import Subject

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on a GPU that supports it and float32 elsewhere."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def engine_settings(base_dir: Path, *, dtype: str, device: str, prompt_format: str) -> EngineSettings:
    """The settings an engine for this base would run with, without loading it (for cache lookups)."""
    resolved = resolve_device(device)
    return hf_settings(base_dir, dtype=str(resolve_dtype(dtype, resolved)).removeprefix("torch."),
                       device_type=resolved.type, prompt_format=prompt_format)


def _batches(lengths: Sequence[int], max_tokens: int, max_rows: int = 256) -> Iterator[list[int]]:
    """Indices grouped longest-first so that rows × longest length stays under `max_tokens`."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for index in order:
        longest = lengths[batch[0]] if batch else lengths[index]
        if batch and ((len(batch) + 1) * longest > max_tokens or len(batch) >= max_rows):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


class Engine:
    """Loads the base once, activates subjects one at a time, and answers score/generate requests."""

    def __init__(
        self,
        base_dir: Path,
        *,
        dtype: str = "auto",
        device: str = "auto",
        prompt_format: str = "plain",
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        max_batch_tokens: int = 8192,
        device_map: str | dict[str, str | int] | None = None,
        max_memory: dict[str, str] | None = None,
        offload_dir: Path | None = None,
        static_cache: bool | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.base_dir = Path(base_dir)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.prompt_format = prompt_format
        self.max_batch_tokens = max_batch_tokens
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.base_dir, local_files_only=True, trust_remote_code=trust_remote_code
            )
            # device_map: accelerate's big-model inference places the layers over the GPUs (and CPU/disk)
            placement = {} if device_map is None else {
                "device_map": device_map, "offload_folder": None if offload_dir is None else str(offload_dir),
                "max_memory": {int(k) if k.isdigit() else k: v for k, v in (max_memory or {}).items()} or None}
            self._load_base = functools.partial(
                AutoModelForCausalLM.from_pretrained,
                self.base_dir,
                dtype=self.dtype,
                local_files_only=True,
                trust_remote_code=trust_remote_code,
                use_safetensors=None if allow_pickle else True,
                **placement,
            )
            self.model = _quietly(self._load_base)
        except (OSError, ValueError) as exc:
            hint = " (set `model.trust_remote_code = true` only if you trust it)" if "remote" in str(exc) else ""
            raise InputError(f"{self.base_dir}: cannot load the base model: {exc}{hint}") from None
        self.dispatched = getattr(self.model, "hf_device_map", None) is not None and device_map is not None
        if self.dispatched:  # inputs go where the embeddings are; accelerate's hooks move activations on
            self.device = self.model.get_input_embeddings().weight.device
            if self.device.type == "meta":
                self.device = torch.device("cpu")
            head = self.model.get_output_embeddings().weight.device
            self.output_device = head if head.type != "meta" else self.device  # logits and samplers live there
        else:
            self.model.to(self.device)
            self.output_device = self.device
        self.model.eval()
        self.offloaded = any(p.device.type == "meta" for p in self.model.parameters())  # to CPU RAM or disk
        if self.offloaded:
            self._scratch = tempfile.TemporaryDirectory(prefix="ppeval-offload-")  # PEFT re-offloads there
        # greedy requests through a static KV cache, compiled by transformers: by default on CUDA only
        on_cuda = self.device.type == "cuda" and not self.offloaded
        self.static_cache = on_cuda if static_cache is None else static_cache
        if self.tokenizer.pad_token_id is None:  # common for base models; padding is masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.settings = engine_settings(self.base_dir, dtype=dtype, device=device, prompt_format=prompt_format)
        self.max_length = self.settings.max_length
        self.encoder = PromptEncoder(self.tokenizer, prompt_format=prompt_format, max_length=self.max_length)
        self.bos_id: int | None = self.encoder.bos_id  # only where the tokenizer adds one by default
        self.prefix_id: int | None = self.encoder.separator_id  # an empty context: that BOS, else EOS
        forward_params = inspect.signature(self.model.forward).parameters
        self._keeps_logits = "logits_to_keep" in forward_params
        # transformers renamed `past_key_values` to `cache` (5.2x); accept either
        self._cache_arg = "cache" if "cache" in forward_params else "past_key_values"
        self._pristine = self._index_pristine()
        self._snapshots: dict[str, torch.Tensor] = {}
        self._encodings: dict[str, EncodedScore] = {}
        self._touched: set[str] = set()
        self._peft_model: object | None = None
        self._reload_base = False
        self.active: Subject | None = None
        self.calls = {"score": 0, "generate": 0, "activate": 0}

    # ----------------------------------------------------------------- weights and subjects
    def _index_pristine(self) -> dict[str, Path]:
        """Which base safetensors file holds each tensor, for restoring weights after a subject."""
        index: dict[str, Path] = {}
        from safetensors import safe_open

        for file in sorted(self.base_dir.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    index[name] = file
        return index

    def _params(self) -> dict[str, torch.nn.Parameter]:
        return dict(self.model.named_parameters())

    def _remember(self, touched: dict[str, torch.Tensor]) -> None:
        """Snapshot (on the host) touched weights that the base's safetensors cannot restore."""
        for name, tensor in touched.items():
            if name not in self._pristine and name not in self._snapshots:
                self._snapshots[name] = tensor.detach().to("cpu", copy=True)
        self._touched |= set(touched)

    def _restore(self) -> None:
        from safetensors import safe_open

        params = self._params()
        by_file: dict[Path, list[str]] = {}
        for name in self._touched:
            if name in self._pristine:
                by_file.setdefault(self._pristine[name], []).append(name)
            else:
                params[name].data.copy_(self._snapshots[name])
        with torch.no_grad():
            for file, names in by_file.items():
                with safe_open(str(file), framework="pt") as handle:
                    for name in names:
                        params[name].data.copy_(handle.get_tensor(name).to(params[name].dtype))
        self._touched = set()

    def activate(self, subject: Subject) -> list[str]:
        """Make `subject` the model that answers requests; returns notes for the scorecard."""
        self.deactivate()
        self.calls["activate"] += 1
        notes: list[str] = []
        if subject.kind == "adapter":
            notes = self._activate_adapter(subject)
        elif subject.kind == "full":
            self._activate_full(subject)
        self.active = subject
        params = self._params()
        bad = sorted(n for n in (self._touched or params) if n in params and params[n].device.type != "meta"
                     and not torch.isfinite(params[n]).all())
        if bad:
            notes.append(f"ALARM: {len(bad)} weight tensor(s) contain NaN/inf after activation, e.g. {bad[0]}")
        return notes

    def _activate_adapter(self, subject: Subject) -> list[str]:
        from peft import PeftModel
        from peft.tuners.tuners_utils import BaseTunerLayer

        if self.offloaded:
            return self._activate_adapter_offloaded(subject)
        peft_model = _quietly(PeftModel.from_pretrained, self.model, str(subject.path), is_trainable=False)
        if not self.dispatched:  # a dispatched base keeps each LoRA layer on its base layer's device
            peft_model.to(self.device)
        prefix = "base_model.model."
        touched: dict[str, torch.Tensor] = {}
        for name, module in peft_model.named_modules():
            if isinstance(module, BaseTunerLayer):
                for pname, param in module.get_base_layer().named_parameters(recurse=False):
                    touched[f"{name.removeprefix(prefix)}.{pname}"] = param
        for name, param in peft_model.named_parameters():
            if ".modules_to_save." in name:
                original = name.removeprefix(prefix).replace(".modules_to_save.default.", ".")
                touched[original] = param
        self._remember(touched)
        try:
            self.model = peft_model.merge_and_unload()
        except Exception as exc:  # merging is impossible for some tuners and quantized bases
            self._peft_model = peft_model
            return [f"adapter applied unmerged (merging failed: {exc}); scoring is slower but equivalent"]
        return []

    def _activate_adapter_offloaded(self, subject: Subject) -> list[str]:
        """Offloaded weights stream from CPU RAM or disk and cannot be merged into: PEFT applies the adapter
        unmerged and re-dispatches the model, so the base is loaded afresh when the subject is done."""
        from peft import PeftModel

        prefixed = {f"base_model.model.{k}": v for k, v in self.model.hf_device_map.items()}
        scratch = Path(self._scratch.name)
        # PEFT copies disk-offloaded shards (with the LoRA weights added) to a path made *relative* from the base's
        # absolute one (peft 0.21 `_update_offload`), i.e. under the working directory: keep that in our scratch
        # directory and make the offload index absolute again afterwards.
        with warnings.catch_warnings(), _working_directory(scratch):
            warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter.*")  # PEFT offloads them
            self._peft_model = PeftModel.from_pretrained(self.model, str(subject.path), is_trainable=False,
                                                         device_map=prefixed, offload_dir=str(scratch))
        _absolute_offload_index(self._peft_model, scratch)  # type: ignore[arg-type]
        self._reload_base = True
        return ["adapter applied unmerged: part of the base is offloaded by device_map (slower, equivalent)"]

    def _activate_full(self, subject: Subject) -> None:
        from safetensors import safe_open

        if self.offloaded:
            raise InputError(f'subject "{subject.name}": a full fine-tune needs every base weight on a device; '
                             "raise [model] max_memory so that device_map offloads nothing")
        params = self._params()
        files = sorted(subject.path.glob("*.safetensors"))
        if not files:
            raise InputError(f'subject "{subject.name}" ({subject.path}): no safetensors weights')
        touched: dict[str, torch.Tensor] = {}
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                touched |= {n: params[n] for n in handle.keys() if n in params}
        self._remember(touched)
        with torch.no_grad():
            for file in files:
                with safe_open(str(file), framework="pt") as handle:
                    for name in handle.keys():
                        if name in params:
                            params[name].data.copy_(handle.get_tensor(name).to(params[name].dtype))

    def deactivate(self) -> None:
        """Return to the pristine base: unload an unmerged adapter, restore touched weights."""
        if self._reload_base:
            self._peft_model, self._reload_base = None, False
            self.model = _quietly(self._load_base).eval()
        if self._peft_model is not None:
            self.model = self._peft_model.unload()  # type: ignore[attr-defined]
            self._peft_model = None
        if self._touched:
            self._restore()
        self.model.__dict__.pop("peft_config", None)  # left behind by PeftModel on the base module
        self.active = None

    @property
    def _forward_model(self) -> torch.nn.Module:
        return self._peft_model if self._peft_model is not None else self.model  # type: ignore[return-value]

    # ----------------------------------------------------------------- tokenization
    def render(self, prompt: Prompt) -> str:
        """Plain text as is; chat turns through the chat template (or as 'role: content' lines)."""
        return self.encoder.render(prompt)

    def _encoded(self, request: ScoreRequest) -> EncodedScore:
        """Tokenize once per request and run (`harness.prompts`): the same encoding serves every subject."""
        key = request.key
        if key not in self._encodings:
            self._encodings[key] = self.encoder.encode_score(request)
        return self._encodings[key]

    # ----------------------------------------------------------------- scoring
    @torch.inference_mode()
    def score(
        self,
        requests: Sequence[ScoreRequest],
        on_batch: Callable[[list[int], list[ScoreResponse]], None] | None = None,
    ) -> list[ScoreResponse]:
        """Teacher-forced log-probs of every continuation token, in length-sorted padded batches."""
        encoded = [self._encoded(r) for r in requests]
        results: list[ScoreResponse | None] = [None] * len(requests)
        lengths = [len(e.context) + len(e.continuation) - 1 for e in encoded]
        for batch in _batches(lengths, self.max_batch_tokens):
            responses = self._score_batch([encoded[i] for i in batch], [requests[i].vocab_stats for i in batch])
            for i, response in zip(batch, responses, strict=True):
                results[i] = response
            self.calls["score"] += len(batch)
            if on_batch is not None:
                on_batch(batch, responses)
        return results  # type: ignore[return-value]

    def _score_batch(self, items: list[EncodedScore], want_stats: list[bool]) -> list[ScoreResponse]:
        inputs = [(e.context + e.continuation)[:-1] for e in items]
        width = max(len(x) for x in inputs)
        keep = max(max(len(e.continuation) for e in items), 1)
        pad = int(self.tokenizer.pad_token_id)
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, x in enumerate(inputs):  # left padding: every continuation ends at the last column
            ids[row, width - len(x) :] = torch.tensor(x)
            mask[row, width - len(x) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {"logits_to_keep": keep} if self._keeps_logits else {}
        logits = self._forward_model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits
        logits = logits[:, -keep:, :]
        targets = torch.zeros((len(items), keep), dtype=torch.long)
        for row, e in enumerate(items):  # continuations are right-aligned, like the logits
            if e.continuation:
                targets[row, keep - len(e.continuation) :] = torch.tensor(e.continuation)
        targets = targets.to(logits.device)  # the last layer's device when the model is split
        # log-softmax over row chunks of at most ~2^26 floats: never a float32 [batch, seq, vocab] tensor
        step = max(1, (1 << 26) // (keep * logits.shape[-1]))
        parts = []
        for r0 in range(0, len(items), step):
            logp = logits[r0 : r0 + step].float().log_softmax(-1)
            target = targets[r0 : r0 + step]
            token_lp = logp.gather(-1, target[..., None]).squeeze(-1)
            greedy = (logp.argmax(-1) == target).float()
            if any(want_stats[r0 : r0 + step]):
                p = logp.exp()
                mean = (p * logp).sum(-1)
                var = (p * logp.square()).sum(-1) - mean.square()
            else:
                mean = var = torch.full_like(token_lp, math.nan)
            parts.append(torch.stack([token_lp, greedy, mean, var]))
        host = torch.cat(parts, dim=1).cpu().tolist()  # one device-to-host copy per batch
        responses = []
        for row, (e, stats) in enumerate(zip(items, want_stats, strict=True)):
            lo = keep - len(e.continuation)
            responses.append(
                ScoreResponse(
                    token_logprobs=tuple(host[0][row][lo:]),
                    greedy=tuple(g > 0.5 for g in host[1][row][lo:]),
                    vocab_mean=tuple(host[2][row][lo:]) if stats else None,
                    vocab_var=tuple(host[3][row][lo:]) if stats else None,
                    truncated=e.truncated,
                )
            )
        return responses

    # ----------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(
        self,
        requests: Sequence[GenerateRequest],
        on_batch: Callable[[list[int], list[GenerateResponse]], None] | None = None,
    ) -> list[GenerateResponse]:
        """Greedy or seeded-sampled continuations, left-padded batches sorted by prompt length."""
        encoded = [self.encoder.encode_prompt(r) for r in requests]  # cut to leave room for the new tokens
        prompts = [e.ids for e in encoded]
        results: list[GenerateResponse | None] = [None] * len(requests)
        greedy = [i for i, r in enumerate(requests) if r.temperature <= 0]
        sampled = [i for i, r in enumerate(requests) if r.temperature > 0]
        for group, static in ((greedy, self.static_cache), (sampled, False)):
            decode = self._generate_batch_static if static else self._generate_batch
            # the budget bounds the prefill (rows x padded prompt); decoding adds one token per row per step
            lengths = [min(len(prompts[i]), self.max_length) for i in group]
            for positions in _batches(lengths, self.max_batch_tokens, max_rows=64):
                batch = [group[j] for j in positions]
                responses = decode([prompts[i] for i in batch], [requests[i] for i in batch])
                responses = [dataclasses.replace(r, truncated=True) if encoded[i].truncated else r
                             for i, r in zip(batch, responses, strict=True)]
                for i, response in zip(batch, responses, strict=True):
                    results[i] = response
                self.calls["generate"] += len(batch)
                if on_batch is not None:
                    on_batch(batch, responses)
        return results  # type: ignore[return-value]

    def _left_padded(self, prompts: list[list[int]], requests: list[GenerateRequest]) -> tuple[torch.Tensor, ...]:
        """Prompts cut to leave room for their new tokens, left-padded: (ids, mask, positions) on the device."""
        budget = [max(self.max_length - r.max_new_tokens, 1) for r in requests]
        prompts = [p[-b:] for p, b in zip(prompts, budget, strict=True)]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), int(self.tokenizer.pad_token_id), dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)

    def _generate_batch_static(
        self, prompts: list[list[int]], requests: list[GenerateRequest]
    ) -> list[GenerateResponse]:
        """Greedy decoding through transformers' `generate` with a static KV cache, which transformers compiles
        (CUDA graphs) on CUDA; finished rows stay in the batch, so the shapes stay fixed."""
        from transformers import GenerationConfig

        ids, mask, _ = self._left_padded(prompts, requests)
        eos = self.tokenizer.eos_token_id
        config = GenerationConfig(max_new_tokens=max(r.max_new_tokens for r in requests), do_sample=False,
                                  eos_token_id=eos, pad_token_id=int(self.tokenizer.pad_token_id),
                                  cache_implementation="static")
        try:
            out = self._forward_model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        except Exception as exc:  # a compiler failure must not lose the run: same results, only slower
            warnings.warn(f"static-cache generation failed ({exc!r}); using the decoding loop", stacklevel=2)
            self.static_cache = False
            return self._generate_batch(prompts, requests)
        responses = []
        for request, row in zip(requests, out[:, ids.shape[1] :].tolist(), strict=True):
            responses.append(finish_generation(self.tokenizer, row[: request.max_new_tokens], "length", request.stop))
        return responses

    def _next_tokens(self, logits: torch.Tensor, requests: list[GenerateRequest], gens: list) -> torch.Tensor:
        chosen = logits.argmax(-1)
        for row, request in enumerate(requests):
            if request.temperature <= 0:
                continue
            probs = (logits[row] / request.temperature).softmax(-1)
            if request.top_p < 1.0:
                sorted_p, order = probs.sort(descending=True)
                drop = sorted_p.cumsum(-1) - sorted_p > request.top_p
                probs = probs.scatter(0, order, sorted_p.masked_fill(drop, 0.0))
            # exponential race (equivalent to multinomial) with one generator per request, so a
            # request's sample does not depend on which other requests share its batch
            noise = torch.empty_like(probs).exponential_(generator=gens[row])
            chosen[row] = (probs / noise).argmax()
        return chosen

    def _generate_batch(self, prompts: list[list[int]], requests: list[GenerateRequest]) -> list[GenerateResponse]:
        """Our own KV-cache loop: seeded sampling per request, finished rows dropped from batch and cache."""
        ids, mask, positions = self._left_padded(prompts, requests)
        gens = []
        for r in requests:
            g = torch.Generator(device=self.output_device)
            g.manual_seed(r.seed)
            gens.append(g)
        eos = self.tokenizer.eos_token_id
        out_ids: list[list[int]] = [[] for _ in prompts]
        reasons: list[str | None] = [None] * len(prompts)
        texts = [""] * len(prompts)
        active = list(range(len(prompts)))  # rows still decoding, as indices into this batch
        model = self._forward_model
        kwargs = {"logits_to_keep": 1} if self._keeps_logits else {}
        output = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs)
        while True:
            live = [requests[i] for i in active]
            chosen = self._next_tokens(output.logits[:, -1, :].float(), live, [gens[i] for i in active])
            for row, token in zip(active, chosen.tolist(), strict=True):
                if token == eos:
                    reasons[row] = "eos"
                    continue
                out_ids[row].append(token)
                if requests[row].stop:  # decoded every step only where a stop string must be looked for
                    texts[row] = self.tokenizer.decode(out_ids[row], skip_special_tokens=True)
                    stops = [texts[row].find(s) for s in requests[row].stop if s in texts[row]]
                    if stops:
                        texts[row] = texts[row][: min(stops)]
                        reasons[row] = "stop"
                        continue
                if len(out_ids[row]) >= requests[row].max_new_tokens:
                    reasons[row] = "length"
            keep = [j for j, row in enumerate(active) if reasons[row] is None]
            if not keep:
                break
            cache = getattr(output, self._cache_arg)
            if len(keep) < len(active):  # drop finished sequences from the batch and the KV cache
                index = torch.tensor(keep)  # on the host: valid for cache layers on any device
                cache.batch_select_indices(index)
                mask, positions, chosen = mask[index], positions[index], chosen[index]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=self.device)], dim=1)
            positions = positions[:, -1:] + 1
            output = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=positions, use_cache=True,
                           **{self._cache_arg: cache}, **kwargs)
        for row, request in enumerate(requests):
            if not request.stop:
                texts[row] = self.tokenizer.decode(out_ids[row], skip_special_tokens=True)
        return [
            GenerateResponse(text=t, n_tokens=len(o), finish_reason=r or "length")  # type: ignore[arg-type]
            for t, o, r in zip(texts, out_ids, reasons, strict=True)
        ]


def _quietly(load: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`load(*args, **kwargs)` without transformers' per-load progress bar and its deprecation warnings (peft
    calls `is_gradient_checkpointing`): once per subject they would scroll the run's own progress away."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return load(*args, **kwargs)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """`os.chdir` into `path` for the block (contextlib.chdir needs Python 3.11)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _absolute_offload_index(model: torch.nn.Module, root: Path) -> None:
    """Resolve relative `safetensors_file` entries of accelerate's offload hooks against `root`."""
    for module in model.modules():
        hook = getattr(module, "_hf_hook", None)
        for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
            index = getattr(getattr(getattr(h, "weights_map", None), "dataset", None), "index", None) or {}
            for entry in index.values():
                file = entry.get("safetensors_file") if isinstance(entry, dict) else None
                if file and not os.path.isabs(file):
                    entry["safetensors_file"] = str(root / file)


def environment() -> dict[str, str]:
    """Library versions and device, for the scorecard's provenance."""
    import platform

    import peft
    import transformers

    device = "cpu"
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": device,
    }

