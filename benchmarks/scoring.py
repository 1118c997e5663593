"""Scoring throughput: the harness end to end against a raw `model(...)` forward loop, as a ratio.

What is measured (all in one process, on the same token sequences):

- **raw forward**: for the base and for each LoRA adapter merged into it (merging is not timed), a
  plain `model(input_ids=..., attention_mask=..., position_ids=...)` loop under `torch.inference_mode()`
  over the texts, batched exactly as the engine batches them (the batches are recorded from the engine).
  This is the ceiling: 5 subjects × the scored tokens.
- **engine**: one loaded `harness.engine.Engine`; for each subject `activate` + `score` + `deactivate`
  (model loading is reported separately, not timed).
- **runner**: `harness.runner.run_evaluation` with the `perplexity` suite over a JSONL `text_file` of the
  same texts, a fresh `run.cache_dir` each time (nothing cached): config validation, subject hashing,
  engine load, 5 activations, scoring, the SQLite cache, statistics and the run directory.

Tokens are the scored continuation tokens (every text token, predicted after BOS); the same count for
all three. Each figure is the median over `--repeats` timed runs (after a warm-up), interleaved so drift
hits all three alike, and is reported as a ratio to the raw forward tokens/s (PERF.md target: ≥ 0.85).

Everything is built in a temporary directory, nothing is downloaded: a byte-level BPE tokenizer trained
on synthetic text, a random-init Llama saved as safetensors, and LoRA adapters (r=16 on all 7 linear
modules, non-zero random B).

- `--size cpu`: hidden 256, 4 layers, vocab 3072, float32, 128 texts × 128 tokens (well under two
  minutes on 2 cores).
- `--size gpu`: the PERF.md 1.1B Llama (hidden 2048, 22 layers, intermediate 5632, 32 heads, 4 KV
  heads, vocab 32000), bfloat16, 256 texts × 512 tokens.

Run from the repository root:

    python benchmarks/scoring.py                       # size and device picked automatically
    python benchmarks/scoring.py --size cpu --repeats 3
    python benchmarks/scoring.py --size gpu --device cuda --n-texts 512
    python benchmarks/scoring.py --profile 25          # also cProfile one runner pass (top 25 by own time)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import itertools
import json
import os
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree without installing

import torch

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PAD, BOS, EOS = "<pad>", "<s>", "</s>"
TARGET_RATIO = 0.85


@dataclass(frozen=True)
class Shape:
    """Model and workload of one `--size`."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    dtype: str
    n_texts: int
    tokens_per_text: int
    max_positions: int


SHAPES = {
    "cpu": Shape(256, 4, 704, 4, 2, 3072, "float32", 128, 128, 512),
    "gpu": Shape(2048, 22, 5632, 32, 4, 32000, "bfloat16", 256, 512, 2048),
}


# --------------------------------------------------------------------------- fixtures
def _lexicon(rng: random.Random, size: int) -> list[str]:
    """Pseudo-words of 1-4 syllables, distinct, in a fixed order (the order sets their frequency)."""
    onsets = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
              "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
    codas = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]
    words: dict[str, None] = {}
    while len(words) < size:
        n = rng.choice((1, 2, 2, 3, 3, 4))
        words["".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(n))] = None
    return list(words)


def _sampler(rng: random.Random, lexicon: Sequence[str]) -> Callable[[int], list[str]]:
    """Zipf-distributed words, like natural text."""
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(lexicon))))

    def sample(k: int) -> list[str]:
        return rng.choices(lexicon, cum_weights=cumulative, k=k)

    return sample


def build_tokenizer(directory: Path, vocab: int, seed: int) -> tuple[Any, list[str], Callable[[int], list[str]]]:
    """A byte-level BPE tokenizer trained on synthetic text; returns it, the lexicon and a word sampler."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(seed)
    lexicon = _lexicon(rng, max(2 * vocab, 1000))
    sample = _sampler(rng, lexicon)
    corpus = [" ".join(sample(64)) for _ in range(max(vocab // 2, 500))] + lexicon
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[PAD, BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    # adds BOS by default, as Llama tokenizers do: the engine (and the raw baselines here) then start with it
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    fast.save_pretrained(directory)
    return fast, lexicon, sample


def build_texts(tokenizer: Any, lexicon: Sequence[str], sample: Callable[[int], list[str]], n: int,
                tokens: int) -> list[str]:
    """`n` distinct texts of exactly `tokens` tokens each (so no batch carries padding)."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    spaced = {w: count(" " + w) for w in lexicon}
    singles = [w for w in lexicon if spaced[w] == 1]
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < n:
        words = sample(1)
        total = count(words[0])
        while total < tokens:
            word = sample(1)[0]
            if total + spaced[word] > tokens:
                word = singles[len(words) % len(singles)]
            words.append(word)
            total += spaced[word]
        text = " ".join(words)
        if text not in seen and count(text) == tokens:
            seen.add(text)
            texts.append(text)
    return texts


def build_base(directory: Path, shape: Shape, vocab: int, device: torch.device, seed: int) -> torch.nn.Module:
    """A random-init Llama of `shape`, saved as safetensors; returned (in memory) for building adapters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_positions, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    with torch.device(device):  # initialise where it will run: seconds instead of minutes for 1.1B
        model = LlamaForCausalLM(config)
    model.to(getattr(torch, shape.dtype))
    model.save_pretrained(directory, safe_serialization=True)
    return model


def build_adapters(model: torch.nn.Module, root: Path, n: int, rank: int, seed: int) -> list[Path]:
    """`n` LoRA adapters on all 7 linear modules with non-zero random B, built on the in-memory base."""
    from peft import LoraConfig, get_peft_model

    paths = []
    for i in range(n):
        torch.manual_seed(seed + 1 + i)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.02)
        path = root / f"adapter{i}"
        peft_model.save_pretrained(path, safe_serialization=True)
        model = peft_model.unload()
        model.__dict__.pop("peft_config", None)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- measurements
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class RawBatch:
    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor


def raw_batches(sequences: Sequence[list[int]], batches: Sequence[list[int]], pad: int,
                device: torch.device) -> list[RawBatch]:
    """The engine's batches as left-padded device tensors, built before any timing."""
    out = []
    for batch in batches:
        rows = [sequences[i] for i in batch]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, row in enumerate(rows):
            ids[j, width - len(row) :] = torch.tensor(row)
            mask[j, width - len(row) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out.append(RawBatch(ids.to(device), mask.to(device), positions.to(device)))
    return out


class RawLoop:
    """A plain transformers model; adapters are merged with PEFT (untimed) and the base restored after."""

    def __init__(self, base_dir: Path, dtype: torch.dtype, device: torch.device) -> None:
        from transformers import AutoModelForCausalLM

        self.device = device
        self.model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, local_files_only=True)
        self.model.to(device).eval()
        self.originals = {
            name: p.detach().clone() for name, p in self.model.named_parameters()
            if any(f".{t}." in name for t in LORA_TARGETS)
        }

    def merge(self, adapter: Path | None) -> None:
        from peft import PeftModel

        if adapter is None:
            return
        peft_model = PeftModel.from_pretrained(self.model, str(adapter), is_trainable=False)
        peft_model.to(self.device)
        self.model = peft_model.merge_and_unload()
        self.model.__dict__.pop("peft_config", None)

    def restore(self) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in self.originals.items():
                params[name].copy_(tensor)

    @torch.inference_mode()
    def forward(self, batches: Sequence[RawBatch]) -> float:
        _sync(self.device)
        start = time.perf_counter()
        for b in batches:
            self.model(input_ids=b.ids, attention_mask=b.mask, position_ids=b.positions)
        _sync(self.device)
        return time.perf_counter() - start

    def timed_pass(self, batches: Sequence[RawBatch], adapters: Sequence[Path | None]) -> float:
        total = 0.0
        for adapter in adapters:
            self.merge(adapter)
            try:
                total += self.forward(batches)
            finally:
                self.restore()
        return total

    @torch.inference_mode()
    def logprobs(self, batch: RawBatch, targets: Sequence[list[int]]) -> list[list[float]]:
        """Log-probs of each row's target ids (right-aligned), for the equality check against the engine."""
        logits = self.model(input_ids=batch.ids, attention_mask=batch.mask, position_ids=batch.positions).logits
        out = []
        for row, target in enumerate(targets):
            ids = torch.tensor(target, device=self.device)
            logp = logits[row, logits.shape[1] - len(target) :].float().log_softmax(-1)
            out.append(logp.gather(-1, ids[:, None]).squeeze(-1).tolist())
        return out


def engine_pass(engine: Any, subjects: Sequence[Any], requests: Sequence[Any],
                on_batch: Callable[[list[int], list[Any]], None] | None = None) -> tuple[float, float, list[list[Any]]]:
    """Seconds for activate + score + deactivate over every subject, of which activation, and responses."""
    _sync(engine.device)
    start = time.perf_counter()
    switching = 0.0
    responses = []
    for subject in subjects:
        t0 = time.perf_counter()
        engine.activate(subject)
        _sync(engine.device)
        switching += time.perf_counter() - t0
        responses.append(engine.score(requests, on_batch=on_batch))
        t0 = time.perf_counter()
        engine.deactivate()
        _sync(engine.device)
        switching += time.perf_counter() - t0
    _sync(engine.device)
    return time.perf_counter() - start, switching, responses


def runner_pass(root: Path, tag: str, raw_config: dict[str, Any], limit: int | None = None,
                profile: cProfile.Profile | None = None) -> tuple[float, int, int]:
    """Seconds for one `run_evaluation` with a fresh cache; returns (seconds, requests computed, tokens)."""
    from rich.console import Console

    from harness.config import parse_config
    from harness.runner import run_evaluation

    raw = json.loads(json.dumps(raw_config))
    raw["run"] = {"cache_dir": str(root / f"cache-{tag}")}
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    config = parse_config(raw, source="benchmarks/scoring.py", base_dir=root)
    result = run_evaluation(config, out_dir=root / f"run-{tag}", suites=["perplexity"], limit=limit,
                            console=Console(stderr=True, quiet=True))
    if profile is not None:
        profile.disable()
    seconds = time.perf_counter() - start
    computed = sum(result.stats.computed.values())
    samples = (result.run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    tokens = sum(int(json.loads(line)["tokens"]) for line in samples)
    del result
    gc.collect()
    return seconds, computed, tokens


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--size", choices=["cpu", "gpu"], default=None,
                        help="model/workload preset (default: gpu if CUDA is available, else cpu)")
    parser.add_argument("--n-texts", type=int, default=None, help="texts to score (default: per --size)")
    parser.add_argument("--tokens-per-text", type=int, default=None, help="tokens per text (default: per --size)")
    parser.add_argument("--adapters", type=int, default=4, help="LoRA adapters besides the base")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (median)")
    parser.add_argument("--max-batch-tokens", type=int, default=8192,
                        help="the engine's batch budget (model.max_batch_tokens), used by all three")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="cProfile one extra runner pass and print its top N functions by own time")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads (default: torch's own choice); 1 is steadier on a busy machine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="build in this directory and keep it")
    return parser.parse_args(argv)


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import peft
    import transformers
    from benchlib import start_run  # benchlib imports this module: import it once main runs

    from harness.engine import Engine
    from harness.requests import ScoreRequest
    from harness.subjects import Subject, content_hash

    device, size = start_run(args)
    shape = SHAPES[size]
    n_texts = args.n_texts or shape.n_texts
    tokens_per_text = args.tokens_per_text or shape.tokens_per_text
    if tokens_per_text + 1 > shape.max_positions:
        raise SystemExit(f"--tokens-per-text must be below {shape.max_positions}")
    dtype = getattr(torch, shape.dtype)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print("environment")
    print(f"  python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__},"
          f" peft {peft.__version__}")
    print(f"  device {device} ({device_name}); torch threads {torch.get_num_threads()}, interop "
          f"{torch.get_num_interop_threads()}, cpu count {os.cpu_count()}")
    print(f"  size {size}: Llama hidden {shape.hidden}, {shape.layers} layers, intermediate {shape.intermediate}, "
          f"{shape.heads} heads / {shape.kv_heads} KV, vocab {shape.vocab}, {shape.dtype}")
    print(f"  workload: {n_texts} texts x {tokens_per_text} tokens, base + {args.adapters} adapters "
          f"(LoRA r={args.rank}, 7 modules, merged), max_batch_tokens {args.max_batch_tokens}, repeats {args.repeats}")
    sys.stdout.flush()

    holder = None if args.keep else tempfile.TemporaryDirectory(prefix="ppeval-bench-")
    root = args.keep or Path(holder.name)  # type: ignore[union-attr]
    root.mkdir(parents=True, exist_ok=True)
    try:
        # ---------------------------------------------------------------- build
        t0 = time.perf_counter()
        base_dir = root / "base"
        tokenizer, lexicon, sample = build_tokenizer(base_dir, shape.vocab, args.seed)
        texts = build_texts(tokenizer, lexicon, sample, n_texts, tokens_per_text)
        text_file = root / "texts.jsonl"
        text_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        vocab = max(shape.vocab, len(tokenizer))
        model = build_base(base_dir, shape, vocab, device, args.seed)
        adapter_dirs = build_adapters(model, root, args.adapters, args.rank, args.seed)
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"\nbuilt fixtures in {time.perf_counter() - t0:.1f} s (tokenizer vocab {len(tokenizer)}, model vocab "
              f"{vocab})")

        subjects = [Subject("base", "base", base_dir, content_hash(base_dir))] + [
            Subject(p.name, "adapter", p, content_hash(p)) for p in adapter_dirs
        ]
        requests = [ScoreRequest("", t) for t in texts]
        raw_config: dict[str, Any] = {
            "model": {"base": str(base_dir), "dtype": shape.dtype, "device": str(device.type),
                      "prompt_format": "plain", "max_batch_tokens": args.max_batch_tokens},
            "subjects": [{"name": p.name, "adapter": str(p)} for p in adapter_dirs],
            "suites": {"perplexity": {"text_file": str(text_file), "max_items": n_texts}},
        }

        # ---------------------------------------------------------------- load + warm up
        t0 = time.perf_counter()
        engine = Engine(base_dir, dtype=shape.dtype, device=str(device.type), prompt_format="plain",
                        max_batch_tokens=args.max_batch_tokens)
        load_s = time.perf_counter() - t0
        batches: list[list[int]] = []
        engine.activate(subjects[0])
        warm = engine.score(requests, on_batch=lambda indices, _: batches.append(list(indices)))
        engine.deactivate()
        tokens = sum(r.n_tokens for r in warm)
        sequences = [[engine.prefix_id, *engine.encoder.encode_text(t)][:-1] for t in texts]
        assert sum(len(s) for s in sequences) == tokens, "raw sequences and scored tokens disagree"
        raw = RawLoop(base_dir, dtype, device)
        tensors = raw_batches(sequences, batches, int(engine.tokenizer.pad_token_id), device)
        raw.forward(tensors[:2])
        runner_pass(root, "warmup", raw_config, limit=min(8, n_texts))
        adapters: list[Path | None] = [None, *adapter_dirs]
        total_tokens = tokens * len(subjects)
        print(f"engine load {load_s:.2f} s; {len(batches)} batches of {len(batches[0])} rows; "
              f"{tokens} scored tokens per subject, {total_tokens} in all\n")
        sys.stdout.flush()

        # ---------------------------------------------------------------- timed, interleaved
        times: dict[str, list[float]] = {"raw": [], "engine": [], "switch": [], "runner": []}
        responses: list[list[Any]] = []
        for rep in range(args.repeats):
            times["raw"].append(raw.timed_pass(tensors, adapters))
            seconds, switching, responses = engine_pass(engine, subjects, requests)
            times["engine"].append(seconds)
            times["switch"].append(switching)
            seconds, computed, runner_tokens = runner_pass(root, f"r{rep}", raw_config)
            assert computed == len(requests) * len(subjects), f"runner computed {computed} requests (cache hit?)"
            assert runner_tokens == total_tokens, f"runner scored {runner_tokens} tokens, expected {total_tokens}"
            times["runner"].append(seconds)
            print(f"  repeat {rep + 1}: raw {times['raw'][-1]:.2f} s, engine {times['engine'][-1]:.2f} s "
                  f"(switching {switching:.2f} s), runner {seconds:.2f} s")
            sys.stdout.flush()

        # ---------------------------------------------------------------- same numbers?
        diffs = []
        for k, adapter in enumerate(adapters[:2]):
            raw.merge(adapter)
            try:
                expected = raw.logprobs(tensors[0], [engine.encoder.encode_text(texts[i]) for i in batches[0]])
            finally:
                raw.restore()
            got = [responses[k][i].token_logprobs for i in batches[0]]
            diffs.append(max(abs(a - b) for g, e in zip(got, expected, strict=True)
                             for a, b in zip(g, e, strict=True)))

        # ---------------------------------------------------------------- report
        raw_s = _median(times["raw"])
        raw_tps = total_tokens / raw_s
        rows = [
            ("raw forward loop", raw_s, ""),
            ("engine activate+score", _median(times["engine"]), f"switching {_median(times['switch']):.2f} s"),
            ("runner run_evaluation", _median(times["runner"]), f"incl. engine load (~{load_s:.2f} s)"),
        ]
        print(f"\n{'measurement':<24}{'median s':>10}{'tokens':>10}{'tok/s':>12}{'ratio':>8}  note")
        for name, seconds, note in rows:
            tps = total_tokens / seconds
            print(f"{name:<24}{seconds:>10.3f}{total_tokens:>10}{tps:>12,.0f}{tps / raw_tps:>8.3f}  {note}")
        engine_ratio = raw_s / _median(times["engine"])
        runner_ratio = raw_s / _median(times["runner"])
        print(f"\nengine/raw tokens/s ratio: {engine_ratio:.3f}")
        print(f"runner/raw tokens/s ratio: {runner_ratio:.3f}  (PERF.md target >= {TARGET_RATIO}: "
              f"{'met' if runner_ratio >= TARGET_RATIO else 'NOT met'})")
        print(f"check: max |engine - raw| log-prob on batch 1, base / adapter0: {diffs[0]:.2e} / {diffs[1]:.2e}")

        if args.profile:
            profile = cProfile.Profile()
            runner_pass(root, "profile", raw_config, profile=profile)
            buffer = io.StringIO()
            pstats.Stats(profile, stream=buffer).sort_stats("tottime").print_stats(args.profile)
            print("\ncProfile of one runner pass (sorted by own time):")
            print(buffer.getvalue())
    finally:
        if holder is not None:
            holder.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
