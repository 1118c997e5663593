"""Peak memory with 1, 2, 4 and 8 LoRA adapters activated one after another through the engine.

What is measured (one process, one loaded `harness.engine.Engine`):

After loading the base and one warm-up pass on it (so that allocator pools, memory maps and lazily built
state exist before counting), the peak counter is reset; then adapters 1..8 are, one after another,
`activate`d (LoRA merged into the base weights), used for a scoring pass over `--texts` texts, and
`deactivate`d (the base weights restored). After the 1st, 2nd, 4th and 8th adapter the peak since the
reset is read:

- CUDA: `torch.cuda.max_memory_allocated` (primary; `max_memory_reserved` printed too) and the host's
  peak RSS;
- CPU: the process's peak resident set size, `VmHWM` in /proc/self/status, reset by writing 5 to
  /proc/self/clear_refs (the kernel's own high-water mark, so no sampling gaps; it includes the
  allocator's cached pages and mapped files). `tracemalloc` is not used: it does not see torch's
  allocations. Where /proc is unavailable it falls back to `resource` `ru_maxrss` (cannot be reset).

The PERF.md target: peak memory going from 1 to 8 adapters grows by no more than the adapters' own size
plus 10%. "The adapters' own size" here is the bytes on disk (`adapter_model.safetensors`,
`adapter_config.json`, README) of the 7 adapters added between N=1 and N=8; the growth is also printed
against one adapter's size (an engine that keeps nothing per adapter should grow by about 0).

- `--size cpu`: the scoring benchmark's CPU Llama (hidden 256, 4 layers, vocab 3072, float32), adapters
  r=16 on all 7 linear modules, 32 texts x 128 tokens scored per adapter (well under a minute).
- `--size gpu`: the PERF.md 1.1B Llama in bfloat16, 64 texts x 512 tokens per adapter.

Run from the repository root:

    python benchmarks/memory.py                       # size and device picked automatically
    python benchmarks/memory.py --size gpu --device cuda
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from benchlib import (
    SHAPES,
    PeakMemory,
    build_adapters,
    build_base,
    build_texts,
    build_tokenizer,
    dir_bytes,
    environment_lines,
    loadavg,
    scratch_dir,
    start_run,
)

CHECKPOINTS = (1, 2, 4, 8)
SLACK = 0.10
WORKLOAD = {"cpu": (32, 128), "gpu": (64, 512)}  # texts, tokens per text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--size", choices=["cpu", "gpu"], default=None,
                        help="model/workload preset (default: gpu if CUDA is available, else cpu)")
    parser.add_argument("--adapters", type=int, default=8, help="adapters activated one after another")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--texts", type=int, default=None, help="texts scored per adapter (per --size)")
    parser.add_argument("--tokens-per-text", type=int, default=None, help="tokens per text (per --size)")
    parser.add_argument("--max-batch-tokens", type=int, default=8192, help="the engine's batch budget")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="build in this directory and keep it")
    return parser.parse_args(argv)


def mib(n: float) -> str:
    return f"{n / 2**20:,.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    from harness.engine import Engine
    from harness.requests import ScoreRequest
    from harness.subjects import Subject, content_hash

    device, size = start_run(args)
    shape = SHAPES[size]
    n_texts = args.texts or WORKLOAD[size][0]
    tokens_per_text = args.tokens_per_text or WORKLOAD[size][1]
    checkpoints = [n for n in CHECKPOINTS if n <= args.adapters] or [args.adapters]
    meter = PeakMemory(device)

    print("environment")
    for line in environment_lines(device, size, shape):
        print(f"  {line}")
    print(f"  workload: {args.adapters} adapters (LoRA r={args.rank}, 7 modules) activated one after another, "
          f"each scoring {n_texts} texts x {tokens_per_text} tokens; max_batch_tokens {args.max_batch_tokens}")
    print(f"  measure: {'torch.cuda.max_memory_allocated (primary) + ' if device.type == 'cuda' else ''}"
          f"host peak RSS by {meter.host_method}")
    sys.stdout.flush()

    holder, root = scratch_dir(args.keep, "ppeval-bench-mem-")
    try:
        t0 = time.perf_counter()
        base_dir = root / "base"
        tokenizer, lexicon, sample = build_tokenizer(base_dir, shape.vocab, args.seed)
        texts = build_texts(tokenizer, lexicon, sample, n_texts, tokens_per_text)
        model = build_base(base_dir, shape, max(shape.vocab, len(tokenizer)), device, args.seed)
        adapter_dirs = build_adapters(model, root, args.adapters, args.rank, args.seed)
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        sizes = [dir_bytes(p) for p in adapter_dirs]
        print(f"\nbuilt fixtures in {time.perf_counter() - t0:.1f} s; adapter size on disk {mib(sizes[0])} MiB each "
              f"(safetensors {mib((adapter_dirs[0] / 'adapter_model.safetensors').stat().st_size)} MiB)")

        engine = Engine(base_dir, dtype=shape.dtype, device=str(device.type), prompt_format="plain",
                        max_batch_tokens=args.max_batch_tokens)
        weights = sum(p.numel() * p.element_size() for p in engine.model.parameters())
        requests = [ScoreRequest("", t) for t in texts]
        subjects = [Subject(p.name, "adapter", p, content_hash(p)) for p in adapter_dirs]
        engine.activate(Subject("base", "base", base_dir, content_hash(base_dir)))  # warm-up on the base
        engine.score(requests)
        engine.deactivate()
        gc.collect()
        print(f"base weights in memory {mib(weights)} MiB; after load + warm-up: host RSS "
              f"{mib(meter.host_current())} MiB" + (f", CUDA allocated {mib(meter.device_current())} MiB"
                                                    if device.type == "cuda" else ""))
        sys.stdout.flush()

        meter.reset()
        rows = []
        for k, subject in enumerate(subjects, start=1):
            engine.activate(subject)
            engine.score(requests)
            engine.deactivate()
            if k in checkpoints:
                allocated, reserved = meter.device_peak()
                rows.append((k, allocated, reserved, meter.host_peak(), meter.host_current(), meter.device_current()))
        leftovers = {"snapshots": len(engine._snapshots), "touched": len(engine._touched),
                     "peft_config": hasattr(engine.model, "peft_config")}

        cuda = device.type == "cuda"
        primary = 1 if cuda else 3  # index into a row: max allocated on CUDA, host peak RSS on CPU
        print(f"\n{'adapters':>8}{'peak MiB':>12}{'growth MiB':>12}{'added adapters MiB':>20}"
              f"{'current MiB':>13}" + (f"{'reserved MiB':>14}{'host peak MiB':>15}" if cuda else ""))
        for row in rows:
            k = row[0]
            growth = row[primary] - rows[0][primary]
            added = sum(sizes[rows[0][0] : k])
            current = row[5] if cuda else row[4]
            extra = f"{mib(row[2]):>14}{mib(row[3]):>15}" if cuda else ""
            print(f"{k:>8}{mib(row[primary]):>12}{mib(growth):>12}{mib(added):>20}{mib(current):>13}{extra}")

        first, last = rows[0], rows[-1]
        growth = last[primary] - first[primary]
        added = sum(sizes[first[0] : last[0]])
        budget = added * (1 + SLACK)
        print(f"\nload average at the end {loadavg()}; engine state after the last deactivate: {leftovers}")
        print(f"growth from {first[0]} to {last[0]} adapters: {mib(growth)} MiB = {growth / max(added, 1):.3f} x the "
              f"{last[0] - first[0]} added adapters' {mib(added)} MiB; budget (+{SLACK:.0%}) {mib(budget)} MiB: "
              f"{'met' if growth <= budget else 'NOT met'}")
        print(f"  = {growth / sizes[0]:.2f} x one adapter ({mib(sizes[0])} MiB); peak / base weights "
              f"{last[primary] / weights:.2f}")
    finally:
        if holder is not None:
            holder.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
