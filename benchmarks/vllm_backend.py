"""The `vllm` backend (`harness.backends.vllm.VLLMBackend`) against HF baselines, LoRA adapters mixed in its batches.

What is measured (all in one process, on the same prompts, texts and weights; the backend is driven through
`serve(work, sink)` exactly as `harness.runner` drives it, so what is timed is what ppeval runs):

- **generation**: HF eager `model.generate` on the base, all prompts as one left-padded greedy batch (default
  dynamic cache, no compile: the PERF.md baseline), against `VLLMBackend.serve` with the same prompts as
  greedy `GenerateRequest`s spread over the `--adapters` adapters (prompt i to adapter i mod N: one `serve`
  call, so vLLM mixes the adapters in its batches). The base-only vLLM run is printed too (info).
  PERF.md target: vLLM mixed-adapter tokens/s >= 10x HF eager.
- **scoring**: `ScoreRequest("", text)` for every text, served by vLLM for the base alone and spread over the
  adapters (text i to adapter i mod N, so both score the same tokens), against a raw HF forward loop
  (`model(input_ids, attention_mask, position_ids)` under `inference_mode`, base, batches of
  `--max-batch-tokens`, as `scoring.py`'s baseline). Target: mixed-adapter tokens/s >= 0.85 of base-only.
- with `--demo-limit L` (L > 0): the wall time of `harness.runner.run_evaluation` over the demo's suite set
  (`harness.demo.config.DEMO_SUITE_OPTIONS`, data from `harness.demo.fixtures.make_data`, `run.limit` L), base +
  the adapters, a fresh cache each, with `[backend] kind = "hf"` and then `"vllm"`: ratio hf seconds / vllm.

Every time is the median of `--repeats` interleaved runs after a warm-up (the warm-up builds the vLLM engine:
its load, and on CUDA its graph capture, are printed, not timed). The LM head's rows of `<pad>`, `<s>`, `</s>`
are zeroed so greedy decoding never stops early: every prompt generates exactly `--new-tokens` tokens.

Checks: the vLLM greedy texts of the first `--check` generation requests (each on its adapter) equal the `hf`
backend's, and its log-probs of the first `--check` score requests are within 1e-4 of `hf`'s; in float32 on
the CPU a mismatch fails the run (exit 1). Where vLLM is not importable the script prints one "skipped" line
and exits 0.

- `--size cpu`: the scoring benchmark's CPU Llama (hidden 256, 4 layers, 4 heads: head size 64, which vLLM's
  CPU attention supports), float32; 32 prompts of 64 tokens + 64 new; 128 texts x 128 tokens.
- `--size gpu`: the PERF.md 1.1B Llama (head size 64) in bfloat16; 32 prompts of 128 tokens + 128 new;
  256 texts x 512 tokens; vLLM gets `gpu_memory_utilization` 0.5 so the HF models fit beside it.

Run from the repository root (in an environment with vLLM, e.g. `.venv-vllm`):

    python benchmarks/vllm_backend.py                          # size and device picked automatically
    python benchmarks/vllm_backend.py --size gpu --device cuda --adapters 8
    python benchmarks/vllm_backend.py --size cpu --prompts 8 --new-tokens 8 --n-texts 8 --repeats 1
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from benchlib import (
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
from generation import SIZES as GENERATION_SIZES
from generation import HFEager, left_padded, zero_special_rows
from scoring import RawLoop, raw_batches

GENERATION_TARGET = 10.0
MIXED_SCORING_TARGET = 0.85
LOGPROB_TOLERANCE = 1e-4


#: generation.py's workloads (batch 32; the shapes of scoring.py), checking 8 requests against the hf backend
SIZES = {size: dataclasses.replace(work, check=8) for size, work in GENERATION_SIZES.items()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--size", choices=["cpu", "gpu"], default=None,
                        help="model/workload preset (default: gpu if CUDA is available, else cpu)")
    parser.add_argument("--adapters", type=int, default=8, help="LoRA adapters the requests are spread over")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--prompts", type=int, default=None, help="generation prompts (default 32)")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="tokens per prompt incl. BOS (per --size)")
    parser.add_argument("--new-tokens", type=int, default=None, help="max_new_tokens (per --size)")
    parser.add_argument("--n-texts", type=int, default=None, help="texts to score (per --size)")
    parser.add_argument("--tokens-per-text", type=int, default=None, help="tokens per scored text (per --size)")
    parser.add_argument("--check", type=int, default=None, help="requests checked against the hf backend")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (median)")
    parser.add_argument("--max-batch-tokens", type=int, default=8192,
                        help="the raw loop's and the hf backend's batch budget (model.max_batch_tokens)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5,
                        help="vLLM's share of GPU memory on CUDA (the HF models share the GPU)")
    parser.add_argument("--demo-limit", type=int, default=0,
                        help="also time run_evaluation over the demo suites, hf vs vllm, with run.limit N (0: skip)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="build in this directory and keep it")
    return parser.parse_args(argv)


class Collector:
    """A sink for `serve`: every response by (subject name, request key)."""

    def __init__(self) -> None:
        self.got: dict[tuple[str, str], Any] = {}

    def __call__(self, subject: Any, requests: Sequence[Any], responses: Sequence[Any]) -> None:
        for request, response in zip(requests, responses, strict=True):
            self.got[(subject.name, request.key)] = response


def spread(subjects: Sequence[Any], requests: Sequence[Any]) -> list[tuple[Any, list[Any]]]:
    """Request i to subject i mod len(subjects): the work of one `serve` call, adapters mixed."""
    return [(s, list(requests[k :: len(subjects)])) for k, s in enumerate(subjects)]


def timed_serve(backend: Any, work: Sequence[tuple[Any, Sequence[Any]]],
                device: torch.device) -> tuple[float, Collector]:
    sink = Collector()
    sync(device)
    start = time.perf_counter()
    backend.serve(work, sink)
    sync(device)
    seconds = time.perf_counter() - start
    expected = sum(len(r) for _, r in work)
    assert len(sink.got) == expected, f"serve answered {len(sink.got)} of {expected} requests"
    return seconds, sink


def make_config(root: Path, base_dir: Path, adapter_dirs: Sequence[Path], shape: Shape, device: torch.device,
                args: argparse.Namespace, backend: dict[str, Any], run: dict[str, Any] | None = None,
                **extra: Any) -> Any:
    from harness.config import parse_config

    run = run or {}
    if backend["kind"] == "vllm" and device.type == "cuda":
        backend = {**backend, "gpu_memory_utilization": args.gpu_memory_utilization}
    raw: dict[str, Any] = {
        "model": {"base": str(base_dir), "dtype": shape.dtype, "device": device.type, "prompt_format": "plain",
                  "max_batch_tokens": args.max_batch_tokens},
        "subjects": [{"name": p.name, "adapter": str(p)} for p in adapter_dirs],
        "backend": backend,
        "run": {"seed": args.seed, "cache_dir": str(root / f"cache-{backend['kind']}"), **run},
        **extra,
    }
    return parse_config(raw, source="benchmarks/vllm_backend.py", base_dir=root)


def write_demo_data(root: Path, seed: int) -> dict[str, str]:
    """The demo's training, holdout and canary files (`harness.demo.fixtures.make_data`), as the test writes them."""
    from harness.canaries import write_canaries
    from harness.demo.fixtures import make_data

    data = make_data(seed)
    files = {"training": root / "train.jsonl", "holdout": root / "holdout.jsonl", "canaries": root / "canaries.jsonl"}
    for key, records in (("training", data.training), ("holdout", [t.to_record() for t in data.holdout])):
        files[key].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    write_canaries(files["canaries"], data.canaries)
    return {k: str(v) for k, v in files.items()}


def demo_runs(root: Path, base_dir: Path, adapter_dirs: Sequence[Path], shape: Shape, device: torch.device,
              args: argparse.Namespace) -> dict[str, float]:
    """Wall seconds of one `run_evaluation` over the demo suite set per backend kind (fresh cache, new process
    state apart from imports: each builds its own backend)."""
    from rich.console import Console

    from harness.demo.config import DEMO_SUITE_OPTIONS
    from harness.registry import suite_names
    from harness.runner import run_evaluation

    data = write_demo_data(root, args.seed)
    suites = {name: dict(DEMO_SUITE_OPTIONS.get(name, {})) for name in suite_names() if name != "accuracy"}
    seconds: dict[str, float] = {}
    for kind in ("hf", "vllm"):
        (root / f"demo-{kind}").mkdir(exist_ok=True)
        config = make_config(root / f"demo-{kind}", base_dir, adapter_dirs, shape, device, args, {"kind": kind},
                             run={"limit": args.demo_limit}, data=data, suites=suites)
        sync(device)
        start = time.perf_counter()
        run_evaluation(config, out_dir=root / f"demo-run-{kind}", console=Console(stderr=True, quiet=True))
        sync(device)
        seconds[kind] = time.perf_counter() - start
        print(f"  demo suites ({', '.join(suites)}), limit {args.demo_limit}, {kind}: {seconds[kind]:.2f} s "
              f"(load average {loadavg()})")
        sys.stdout.flush()
        gc.collect()
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout holds the figures only
    try:
        import vllm
    except ImportError as exc:
        print(f"skipped: vLLM not installed ({type(exc).__name__}: {exc}; run with an environment that has it, "
              f"e.g. PYTHON=.venv-vllm/bin/python)")
        return 0
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=UserWarning)

    from harness.backends.hf import HFBackend
    from harness.backends.vllm import VLLMBackend
    from harness.requests import GenerateRequest, ScoreRequest

    device, size = start_run(args)
    if device.type == "cpu":
        os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # as the backend does on CPU: no run-time compile
    work = SIZES[size]
    shape = work.shape
    n_prompts = args.prompts or work.prompts
    prompt_tokens = args.prompt_tokens or work.prompt_tokens
    new_tokens = args.new_tokens or work.new_tokens
    n_texts = args.n_texts or shape.n_texts
    tokens_per_text = args.tokens_per_text or shape.tokens_per_text
    check = min(args.check if args.check is not None else work.check, n_prompts, n_texts)
    if prompt_tokens + new_tokens > shape.max_positions or tokens_per_text + 2 > shape.max_positions:
        raise SystemExit(f"prompts + new tokens and scored texts must fit in {shape.max_positions} positions")
    if args.adapters < 1:
        raise SystemExit("--adapters must be at least 1")
    dtype = getattr(torch, shape.dtype)

    print("environment")
    for line in environment_lines(device, size, shape):
        print(f"  {line}")
    print(f"  vllm {vllm.__version__}; head size {shape.hidden // shape.heads}")
    print(f"  workload: generate {n_prompts} prompts of {prompt_tokens} tokens (incl. BOS), greedy, {new_tokens} new "
          f"tokens; score {n_texts} texts x {tokens_per_text} tokens; base + {args.adapters} adapters "
          f"(LoRA r={args.rank}, 7 modules), requests spread over the adapters; repeats {args.repeats}; "
          f"{check} requests checked vs hf")
    sys.stdout.flush()

    holder, root = scratch_dir(args.keep, "ppeval-bench-vllm-")
    try:
        # ---------------------------------------------------------------- build
        t0 = time.perf_counter()
        base_dir = root / "base"
        tokenizer, lexicon, sample = build_tokenizer(base_dir, shape.vocab, args.seed)
        prompts_text = build_texts(tokenizer, lexicon, sample, n_prompts, prompt_tokens - 1)  # + BOS
        texts = build_texts(tokenizer, lexicon, sample, n_texts + n_prompts, tokens_per_text)
        texts = [t for t in texts if t not in set(prompts_text)][:n_texts]
        vocab = max(shape.vocab, len(tokenizer))
        model = build_base(base_dir, shape, vocab, device, args.seed)
        specials = sorted({int(i) for i in (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)})
        zero_special_rows(model, specials)
        model.save_pretrained(base_dir, safe_serialization=True)
        adapter_dirs = build_adapters(model, root, args.adapters, args.rank, args.seed)
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"\nbuilt fixtures in {time.perf_counter() - t0:.1f} s (special-token logits zeroed: {specials})")

        # ---------------------------------------------------------------- backends, requests
        config = make_config(root, base_dir, adapter_dirs, shape, device, args, {"kind": "vllm"})
        backend = VLLMBackend(config)
        subjects = backend.subjects(config)
        base, adapters = subjects[0], subjects[1:]
        gen_requests = [GenerateRequest(prompt=p, max_new_tokens=new_tokens) for p in prompts_text]
        score_requests = [ScoreRequest("", t) for t in texts]
        gen_mixed, gen_base = spread(adapters, gen_requests), [(base, gen_requests)]
        score_mixed, score_base = spread(adapters, score_requests), [(base, score_requests)]

        t0 = time.perf_counter()  # warm-up: the engine is built for the base and every adapter (LoRA enabled)
        timed_serve(backend, [(base, gen_requests[:2]), *spread(adapters, score_requests[: 2 * len(adapters)])], device)
        vllm_load = time.perf_counter() - t0
        encoder = backend.encoder()
        encoded = [encoder.encode_score(r) for r in score_requests]
        score_tokens = sum(len(e.continuation) for e in encoded)
        sequences = [(e.context + e.continuation)[:-1] for e in encoded]
        rows = max(1, args.max_batch_tokens // max(len(s) for s in sequences))
        batches = [list(range(i, min(i + rows, len(sequences)))) for i in range(0, len(sequences), rows)]

        hf_model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, local_files_only=True)
        hf_model.to(device).eval()
        pad, eos = int(tokenizer.pad_token_id), int(tokenizer.eos_token_id)
        prompt_ids = [[int(tokenizer.bos_token_id), *tokenizer(p, add_special_tokens=False)["input_ids"]]
                      for p in prompts_text]
        ids, mask = left_padded(prompt_ids, pad, device)
        hf = HFEager(hf_model, new_tokens, eos, pad, device)
        raw = RawLoop(base_dir, dtype, device)
        tensors = raw_batches(sequences, batches, pad, device)
        hf.run(ids, mask)
        raw.forward(tensors[:2])
        print(f"vLLM engine built and warmed up in {vllm_load:.2f} s (base + {len(adapters)} LoRA slots); "
              f"raw loop: {len(batches)} batches of <= {rows} rows\n")
        sys.stdout.flush()

        # ---------------------------------------------------------------- timed, interleaved
        names = ("hf_eager", "vllm_gen_mixed", "vllm_gen_base", "raw", "vllm_score_base", "vllm_score_mixed")
        times: dict[str, list[float]] = {n: [] for n in names}
        out: dict[str, Any] = {}
        for rep in range(args.repeats):
            seconds, out["hf_eager"] = hf.run(ids, mask)
            times["hf_eager"].append(seconds)
            for name, w in (("vllm_gen_mixed", gen_mixed), ("vllm_gen_base", gen_base)):
                seconds, out[name] = timed_serve(backend, w, device)
                times[name].append(seconds)
            times["raw"].append(raw.forward(tensors))
            for name, w in (("vllm_score_base", score_base), ("vllm_score_mixed", score_mixed)):
                seconds, out[name] = timed_serve(backend, w, device)
                times[name].append(seconds)
            print(f"  repeat {rep + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names)
                  + f" (load average {loadavg()})")
            sys.stdout.flush()

        # ---------------------------------------------------------------- same answers as the hf backend?
        del hf_model, raw, hf
        gc.collect()
        hf_backend = HFBackend(make_config(root, base_dir, adapter_dirs, shape, device, args, {"kind": "hf"}))
        gen_check = [(s, rs[: max(1, check // len(adapters))]) for s, rs in gen_mixed][:check]
        score_check = [(base, score_requests[:check]), *[(s, rs[:1]) for s, rs in score_mixed][:check]]
        check_work: dict[str, tuple[Any, list[Any]]] = {}
        for s, rs in [*score_check, *gen_check]:
            check_work.setdefault(s.name, (s, []))[1].extend(rs)
        hf_sink = Collector()
        hf_backend.serve(list(check_work.values()), hf_sink)
        hf_backend.close()
        gen_pairs = [(hf_sink.got[(s.name, r.key)], out["vllm_gen_mixed"].got[(s.name, r.key)])
                     for s, rs in gen_check for r in rs]
        gen_mismatch = sum(a.text != b.text or a.n_tokens != b.n_tokens for a, b in gen_pairs)
        gaps = []
        for s, rs in score_check:
            source = out["vllm_score_base"] if s.name == "base" else out["vllm_score_mixed"]
            for r in rs:
                a, b = hf_sink.got[(s.name, r.key)], source.got[(s.name, r.key)]
                gaps.append(max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs, strict=True)))
        score_gap = max(gaps)
        backend.close()
        del backend, hf_backend
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        demo = demo_runs(root, base_dir, adapter_dirs, shape, device, args) if args.demo_limit > 0 else None

        # ---------------------------------------------------------------- report
        gen_tokens = {"hf_eager": sum(len(r) for r in out["hf_eager"]),
                      "vllm_gen_mixed": sum(r.n_tokens for r in out["vllm_gen_mixed"].got.values()),
                      "vllm_gen_base": sum(r.n_tokens for r in out["vllm_gen_base"].got.values())}
        tps = {n: gen_tokens[n] / median(times[n]) for n in gen_tokens}
        tps |= {n: score_tokens / median(times[n]) for n in ("raw", "vllm_score_base", "vllm_score_mixed")}
        labels = {"hf_eager": "HF eager generate (base, batch)", "vllm_gen_mixed": "vllm generate (adapters mixed)",
                  "vllm_gen_base": "vllm generate (base only)", "raw": "raw HF forward loop (base)",
                  "vllm_score_base": "vllm score (base only)", "vllm_score_mixed": "vllm score (adapters mixed)"}
        print(f"\n{'measurement':<36}{'median s':>10}{'tokens':>10}{'tok/s':>12}{'ratio':>8}  baseline")
        for name in names:
            base_name = "hf_eager" if name in gen_tokens else "raw"
            tokens = gen_tokens.get(name, score_tokens)
            print(f"{labels[name]:<36}{median(times[name]):>10.3f}{tokens:>10}{tps[name]:>12,.0f}"
                  f"{tps[name] / tps[base_name]:>8.3f}  {labels[base_name]}")
        gen_ratio = tps["vllm_gen_mixed"] / tps["hf_eager"]
        mixed_ratio = tps["vllm_score_mixed"] / tps["vllm_score_base"]
        print(f"\nload average at the end {loadavg()}")
        print(f"vllm generate (mixed, {len(adapters)} adapters) / HF eager tokens/s ratio: {gen_ratio:.3f}  "
              f"(PERF.md target >= {GENERATION_TARGET:g}: {'met' if gen_ratio >= GENERATION_TARGET else 'NOT met'})")
        print(f"vllm generate (base only) / HF eager tokens/s ratio: {tps['vllm_gen_base'] / tps['hf_eager']:.3f}")
        print(f"vllm score mixed-adapter / base-only tokens/s ratio: {mixed_ratio:.3f}  (target >= "
              f"{MIXED_SCORING_TARGET}: {'met' if mixed_ratio >= MIXED_SCORING_TARGET else 'NOT met'})")
        print(f"vllm score (mixed) / raw HF forward loop tokens/s ratio: {tps['vllm_score_mixed'] / tps['raw']:.3f}")
        print(f"vllm score (base) / raw HF forward loop tokens/s ratio: {tps['vllm_score_base'] / tps['raw']:.3f}")
        if demo is not None:
            print(f"demo suites run_evaluation hf / vllm wall time ratio: {demo['hf'] / demo['vllm']:.3f}  "
                  f"(hf {demo['hf']:.2f} s, vllm {demo['vllm']:.2f} s; base + {len(adapters)} adapters, "
                  f"limit {args.demo_limit})")
        print(f"check: vllm greedy vs hf backend: {gen_mismatch} mismatches of {len(gen_pairs)} ({shape.dtype})")
        print(f"check: max |vllm - hf backend| log-prob over {len(gaps)} score requests (base and adapters): "
              f"{score_gap:.2e} (tolerance {LOGPROB_TOLERANCE:g})")
        if shape.dtype == "float32" and device.type == "cpu" and (gen_mismatch or score_gap > LOGPROB_TOLERANCE):
            print("FAIL: vLLM must answer as the hf backend does in float32 on the CPU")
            return 1
    finally:
        if holder is not None:
            holder.cleanup()
    return 0


if __name__ == "__main__":  # vLLM spawns processes: nothing may run at import
    raise SystemExit(main())
