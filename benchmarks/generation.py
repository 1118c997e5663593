"""Generation throughput: the harness's `Engine.generate` against HF eager `model.generate` at batch 32.

What is measured (all in one process, on the same prompts and the same weights):

- **HF eager generate**: a plain `transformers` model, `model.generate(input_ids, attention_mask, do_sample=False,
  max_new_tokens=N)` on all prompts as one left-padded batch (default dynamic KV cache, no compile): the
  baseline of PERF.md (1,256 new tok/s for the 1.1B model in bf16 on an H200).
- **engine generate**: one loaded `harness.engine.Engine` (the base active), `Engine.generate` on the same
  prompts as greedy `GenerateRequest`s with the same `max_new_tokens` (tokenization and decoding included,
  as the runner calls it).
- with `--adapter`: the same two with one LoRA adapter (r=16, 7 modules) active: the engine merges it,
  HF runs it unmerged through `PeftModel` (what `lm_eval --model_args peft=...` does).

The special tokens' rows of the LM head are zeroed, so greedy decoding never picks EOS/BOS/PAD: every
row generates exactly `max_new_tokens` in both (EOS is the same for both anyway). Tokens/s counts new
tokens; each time is the median of `--repeats` interleaved runs after a warm-up; the ratio is over HF
eager's tokens/s (PERF.md target: >= 10).

Correctness: the engine's greedy text for the first `--check` prompts must equal HF `generate` run on
each prompt alone (batch 1), decoded the same way (`skip_special_tokens=True`); mismatches are counted
and must be 0 in float32 on the CPU. HF's own batched outputs are compared with batch-1 too (info).

- `--size cpu`: the scoring benchmark's CPU Llama (hidden 256, 4 layers, vocab 3072, float32), 32 prompts
  of 64 tokens, 64 new tokens, all 32 checked (about a minute on 2 cores).
- `--size gpu`: the PERF.md 1.1B Llama in bfloat16, 32 prompts of 128 tokens, 128 new tokens, 8 checked
  (bf16 batch-vs-single mismatches are expected and reported, not a failure).

Run from the repository root:

    python benchmarks/generation.py                      # size and device picked automatically
    python benchmarks/generation.py --size cpu --threads 1
    python benchmarks/generation.py --size gpu --device cuda --adapter
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from benchlib import (
    SHAPES,
    Shape,
    build_adapters,
    build_base,
    build_texts,
    build_tokenizer,
    environment_lines,
    loadavg,
    median,
    scratch_dir,
    start_run,
    sync,
)

TARGET_RATIO = 10.0


@dataclass(frozen=True)
class Workload:
    shape: Shape
    prompts: int
    prompt_tokens: int
    new_tokens: int
    check: int


SIZES = {
    "cpu": Workload(SHAPES["cpu"], prompts=32, prompt_tokens=64, new_tokens=64, check=32),
    "gpu": Workload(SHAPES["gpu"], prompts=32, prompt_tokens=128, new_tokens=128, check=8),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--size", choices=["cpu", "gpu"], default=None,
                        help="model/workload preset (default: gpu if CUDA is available, else cpu)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts in the batch (default 32)")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="tokens per prompt incl. BOS (per --size)")
    parser.add_argument("--min-prompt-tokens", type=int, default=None,
                        help="vary prompt lengths uniformly in [this, --prompt-tokens] (default: all equal)")
    parser.add_argument("--new-tokens", type=int, default=None, help="max_new_tokens (per --size)")
    parser.add_argument("--check", type=int, default=None, help="prompts checked against HF batch-1 generate")
    parser.add_argument("--adapter", action="store_true", help="also time both with one LoRA adapter active")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank of --adapter")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (median)")
    parser.add_argument("--max-batch-tokens", type=int, default=None,
                        help="the engine's budget (default: enough for all prompts in one batch)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--static-cache", choices=["auto", "on", "off"], default="auto",
                        help="the engine's static-KV-cache greedy path (auto: on CUDA only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="build in this directory and keep it")
    return parser.parse_args(argv)


def zero_special_rows(model: torch.nn.Module, ids: Sequence[int]) -> None:
    """Greedy decoding never picks these: their logit is 0 while the largest of the others is > 0."""
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        for i in ids:
            head[i].zero_()


def left_padded(prompts: Sequence[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


class HFEager:
    """`model.generate` as a user of plain transformers runs it (greedy, dynamic cache, no compile)."""

    def __init__(self, model: Any, new_tokens: int, eos: int, pad: int, device: torch.device) -> None:
        self.model, self.device = model, device
        self.kwargs = {"do_sample": False, "num_beams": 1, "max_new_tokens": new_tokens, "min_new_tokens": 0,
                       "eos_token_id": eos, "pad_token_id": pad, "use_cache": True}
        self.eos, self.pad = eos, pad

    @torch.inference_mode()
    def run(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, list[list[int]]]:
        sync(self.device)
        start = time.perf_counter()
        out = self.model.generate(input_ids=ids, attention_mask=mask, **self.kwargs)
        sync(self.device)
        seconds = time.perf_counter() - start
        rows = []
        for row in out[:, ids.shape[1] :].tolist():
            new = []
            for token in row:
                if token == self.eos:
                    break
                new.append(token)
            rows.append(new)
        return seconds, rows


def engine_run(engine: Any, requests: Sequence[Any]) -> tuple[float, list[Any], list[int]]:
    sizes: list[int] = []
    sync(engine.device)
    start = time.perf_counter()
    responses = engine.generate(requests, on_batch=lambda batch, _: sizes.append(len(batch)))
    sync(engine.device)
    return time.perf_counter() - start, responses, sizes


def timed_pair(label: str, engine: Any, requests: Sequence[Any], hf: HFEager, ids: torch.Tensor, mask: torch.Tensor,
               repeats: int) -> dict[str, Any]:
    """Warm-up then `repeats` interleaved timed runs of both; returns times, outputs and batch sizes."""
    _, engine_out, sizes = engine_run(engine, requests)
    _, hf_out = hf.run(ids, mask)
    times: dict[str, list[float]] = {"hf": [], "engine": []}
    for rep in range(repeats):
        seconds, _ = hf.run(ids, mask)
        times["hf"].append(seconds)
        seconds, engine_out, sizes = engine_run(engine, requests)
        times["engine"].append(seconds)
        print(f"  {label} repeat {rep + 1}: HF eager {times['hf'][-1]:.2f} s, engine {seconds:.2f} s "
              f"(load average {loadavg()})")
        sys.stdout.flush()
    return {"times": times, "engine": engine_out, "hf": hf_out, "batches": sizes}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=UserWarning)

    from harness.engine import Engine
    from harness.requests import GenerateRequest
    from harness.subjects import Subject, content_hash

    device, size = start_run(args)
    work = SIZES[size]
    shape = work.shape
    n_prompts = args.prompts or work.prompts
    prompt_tokens = args.prompt_tokens or work.prompt_tokens
    min_prompt = args.min_prompt_tokens or prompt_tokens
    new_tokens = args.new_tokens or work.new_tokens
    check = min(args.check if args.check is not None else work.check, n_prompts)
    if prompt_tokens + new_tokens > shape.max_positions:
        raise SystemExit(f"--prompt-tokens + --new-tokens must be at most {shape.max_positions}")
    max_batch_tokens = args.max_batch_tokens or n_prompts * (prompt_tokens + new_tokens)
    dtype = getattr(torch, shape.dtype)

    print("environment")
    for line in environment_lines(device, size, shape):
        print(f"  {line}")
    print(f"  workload: {n_prompts} prompts of {min_prompt}-{prompt_tokens} tokens (incl. BOS), greedy, "
          f"{new_tokens} new tokens, repeats {args.repeats}, engine max_batch_tokens {max_batch_tokens}, "
          f"{check} prompts checked against batch-1 HF generate")
    sys.stdout.flush()

    holder, root = scratch_dir(args.keep, "ppeval-bench-gen-")
    try:
        # ---------------------------------------------------------------- build
        t0 = time.perf_counter()
        base_dir = root / "base"
        tokenizer, lexicon, sample = build_tokenizer(base_dir, shape.vocab, args.seed)
        rng = random.Random(args.seed)
        lengths = [rng.randint(min_prompt, prompt_tokens) for _ in range(n_prompts)]
        texts = []
        for length in sorted(set(lengths)):
            texts += build_texts(tokenizer, lexicon, sample, lengths.count(length), length - 1)  # + BOS
        rng.shuffle(texts)
        vocab = max(shape.vocab, len(tokenizer))
        model = build_base(base_dir, shape, vocab, device, args.seed)
        specials = sorted({int(i) for i in (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)})
        zero_special_rows(model, specials)
        model.save_pretrained(base_dir, safe_serialization=True)
        adapter_dirs = build_adapters(model, root, 1, args.rank, args.seed) if args.adapter else []
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"\nbuilt fixtures in {time.perf_counter() - t0:.1f} s (special-token logits zeroed: {specials})")

        # ---------------------------------------------------------------- load
        t0 = time.perf_counter()
        engine = Engine(base_dir, dtype=shape.dtype, device=str(device.type), prompt_format="plain",
                        max_batch_tokens=max_batch_tokens,
                        static_cache={"auto": None, "on": True, "off": False}[args.static_cache])
        print(f"engine greedy path: {'static KV cache (transformers generate)' if engine.static_cache else 'own loop'}")
        engine.activate(Subject("base", "base", base_dir, content_hash(base_dir)))
        load_s = time.perf_counter() - t0
        hf_model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, local_files_only=True)
        hf_model.to(device).eval()
        pad, eos = int(tokenizer.pad_token_id), int(tokenizer.eos_token_id)
        prompts = [[int(tokenizer.bos_token_id), *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
        assert sorted(len(p) for p in prompts) == sorted(lengths), "prompt lengths differ from the plan"
        ids, mask = left_padded(prompts, pad, device)
        requests = [GenerateRequest(prompt=t, max_new_tokens=new_tokens) for t in texts]
        hf = HFEager(hf_model, new_tokens, eos, pad, device)
        print(f"engine load {load_s:.2f} s; HF cache implementation: "
              f"{hf_model.generation_config.cache_implementation or 'default (dynamic)'}\n")
        sys.stdout.flush()

        # ---------------------------------------------------------------- timed, interleaved
        base_run = timed_pair("base", engine, requests, hf, ids, mask, args.repeats)
        adapter_run = None
        if adapter_dirs:
            from peft import PeftModel

            engine.activate(Subject("adapter0", "adapter", adapter_dirs[0], content_hash(adapter_dirs[0])))
            peft_model = PeftModel.from_pretrained(hf_model, str(adapter_dirs[0]), is_trainable=False)
            peft_model.to(device).eval()
            adapter_run = timed_pair("adapter0", engine, requests, HFEager(peft_model, new_tokens, eos, pad, device),
                                     ids, mask, args.repeats)
            engine.deactivate()
            hf_model = peft_model.unload()
            hf = HFEager(hf_model, new_tokens, eos, pad, device)

        # ---------------------------------------------------------------- same outputs?
        engine_mismatch, hf_batch_mismatch, first_bad = 0, 0, None
        for i in range(check):
            start = ids.shape[1] - len(prompts[i])  # the prompt alone, without its left padding
            _, single = hf.run(ids[i : i + 1, start:], mask[i : i + 1, start:])
            expected = tokenizer.decode(single[0], skip_special_tokens=True)
            got = base_run["engine"][i]
            if got.text != expected or got.n_tokens != len(single[0]):
                engine_mismatch += 1
                first_bad = first_bad if first_bad is not None else i
            if base_run["hf"][i] != single[0]:
                hf_batch_mismatch += 1

        # ---------------------------------------------------------------- report
        def rows_of(run: dict[str, Any], label: str, hf_label: str) -> list[tuple[str, float, int]]:
            engine_tokens = sum(r.n_tokens for r in run["engine"])
            hf_tokens = sum(len(r) for r in run["hf"])
            return [(f"HF eager generate{hf_label}", median(run["times"]["hf"]), hf_tokens),
                    (f"engine generate{label}", median(run["times"]["engine"]), engine_tokens)]

        table = [rows_of(base_run, " (base)", " (base)")]
        if adapter_run is not None:
            table.append(rows_of(adapter_run, " (adapter, merged)", " (adapter, PEFT unmerged)"))
        print(f"\n{'measurement':<42}{'median s':>10}{'new tokens':>12}{'tok/s':>12}{'ratio':>8}")
        ratios = []
        for (hf_name, hf_s, hf_tokens), (eng_name, eng_s, eng_tokens) in table:
            hf_tps, eng_tps = hf_tokens / hf_s, eng_tokens / eng_s
            print(f"{hf_name:<42}{hf_s:>10.3f}{hf_tokens:>12}{hf_tps:>12,.0f}{1.0:>8.3f}")
            print(f"{eng_name:<42}{eng_s:>10.3f}{eng_tokens:>12}{eng_tps:>12,.0f}{eng_tps / hf_tps:>8.3f}")
            ratios.append(eng_tps / hf_tps)
        print(f"\nengine batches: {base_run['batches']} (sizes); load average at the end {loadavg()}")
        print(f"engine/HF eager tokens/s ratio (base): {ratios[0]:.3f}  (PERF.md target >= {TARGET_RATIO:g}: "
              f"{'met' if ratios[0] >= TARGET_RATIO else 'NOT met'})")
        if len(ratios) > 1:
            print(f"engine (merged) / HF eager (PEFT unmerged) tokens/s ratio, adapter: {ratios[1]:.3f}")
            agree = sum(a.text == tokenizer.decode(b, skip_special_tokens=True)
                        for a, b in zip(adapter_run["engine"], adapter_run["hf"], strict=True))  # type: ignore[index]
            print(f"  info: adapter outputs, engine merged vs HF unmerged batched: {agree}/{n_prompts} identical")
        print(f"check: engine greedy vs HF generate one prompt at a time: {engine_mismatch} mismatches of {check} "
              f"({shape.dtype}){'' if first_bad is None else f', first at prompt {first_bad}'}")
        print(f"  info: HF batched vs HF one at a time: {hf_batch_mismatch} mismatches of {check}")
        if engine_mismatch and shape.dtype == "float32" and device.type == "cpu":
            print("FAIL: greedy outputs must be identical in float32 on the CPU")
            return 1
    finally:
        if holder is not None:
            holder.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
