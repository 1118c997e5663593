"""The accuracy suite over base + 4 adapters against the `lm_eval` command run once per subject.

What is measured (wall clock, the same tasks, documents and limit for both):

- **ppeval run_evaluation**: `harness.runner.run_evaluation` in this process with only the `accuracy`
  suite (`suites = {"accuracy": {"tasks": [...], "limit": L}}`) over the base and `--adapters` LoRA
  adapters, a fresh `run.cache_dir` each time: planning through lm-eval, one engine load, each adapter
  merged in turn, lm-eval's scoring of every subject, bootstrap intervals, the run directory.
- **ppeval run (CLI)**: the same as one `python -m harness.cli run config.toml` subprocess, so that it pays
  interpreter start-up and imports like the peer does (the stricter comparison).
- **lm_eval x subjects**: `python -m lm_eval run --model hf --model_args pretrained=<base>[,peft=<adapter>],
  add_bos_token=True,dtype=<dtype> --tasks <tasks> --include_path <dir> --limit L --batch_size B --device D
  --output_path ...` once per subject, one after another, as a user without ppeval would (each process
  loads the model again; the adapter stays unmerged). The task YAMLs are the shipped ones
  (suites/accuracy/tasks), copied with the data file made absolute (lm-eval resolves relative
  `data_files` against the working directory, ppeval against the YAML's directory).

The ratio is lm-eval's total wall time over ours (PERF.md target: >= 3). Every metric of every subject
must be identical (|difference| <= 1e-6); the script prints both and exits 1 if one differs.

Fixtures are built in a temporary directory like `scoring.py` builds them, and the tokenizer prepends
`<s>` when `add_special_tokens=True` (as Llama's does, see tests/tiny.py), so lm-eval's `add_bos_token=True`
matches the engine's BOS. Datasets are cached in the temporary directory (HF_DATASETS_CACHE), offline.

The tokenizer is a byte-level BPE trained first on the shipped tasks' own text (about 25 tokens per context,
as with a real Llama tokenizer; the pseudo-word tokenizer of `scoring.py` alone makes it about 80), filled up
to the preset's vocabulary with pseudo-words. The model's vocabulary equals `len(tokenizer)`: where they
differ, lm-eval resizes the embeddings when it loads a `peft=` adapter, and its numbers are no longer the
model's (ppeval's are).

Besides the metrics, every request lm_eval logged (`--log_samples`) is looked up in ppeval's result cache:
log-likelihoods (max |difference|, must be < 1e-3 in float32; float32 sums in lm-eval vs float64 in ppeval
make ~1e-6), greedy flags and generated texts (must be identical in float32). A random model's exact_match is
0 on both sides, so only this check shows that generation agrees.

- `--size cpu`: the scoring benchmark's CPU Llama (hidden 256, 4 layers, vocab 3072), the first 40
  documents of both shipped tasks, 1 repeat (several minutes on 2 busy cores, mostly lm-eval's start-ups).
- `--size gpu`: the PERF.md 1.1B Llama (vocab 32000), all 120 documents; float32 by default so that
  equality is meaningful across the two tools' different batch shapes (`--dtype bfloat16` to time bf16;
  then small differences may appear).

Run from the repository root:

    python benchmarks/accuracy_vs_lm_eval.py                 # size and device picked automatically
    python benchmarks/accuracy_vs_lm_eval.py --size cpu --threads 1
    python benchmarks/accuracy_vs_lm_eval.py --size gpu --device cuda --repeats 1
    python benchmarks/accuracy_vs_lm_eval.py --limit 10 --profile 40   # + cProfile of one run_evaluation
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import json
import os
import pstats
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # datasets' and lm-eval's progress bars (read at import), subprocesses too

import torch
from benchlib import (
    SHAPES,
    build_adapters,
    build_base,
    build_corpus_tokenizer,
    environment_lines,
    loadavg,
    median,
    scratch_dir,
    start_run,
)

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 3.0
TOLERANCE = 1e-6
LL_TOLERANCE = 1e-3  # per-request log-likelihood; lm-eval sums float32 token log-probs, ppeval float64
CPU_LIMIT = 40  # documents per task at --size cpu: 5 lm_eval start-ups already take minutes on 2 busy cores


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--size", choices=["cpu", "gpu"], default=None,
                        help="model preset (default: gpu if CUDA is available, else cpu)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="dtype for both tools (default float32: equal metrics are expected)")
    parser.add_argument("--adapters", type=int, default=4, help="LoRA adapters besides the base")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--tasks", default=None, help="comma-separated shipped tasks (default: all shipped)")
    parser.add_argument("--limit", type=int, default=None,
                        help="documents per task (default: 40 at --size cpu, all 120 at --size gpu; 0 = all)")
    parser.add_argument("--lm-eval-batch-size", default="32", help="lm_eval --batch_size (default 32)")
    parser.add_argument("--max-batch-tokens", type=int, default=8192, help="ppeval model.max_batch_tokens")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each measurement (median)")
    parser.add_argument("--no-cli", action="store_true", help="skip the `ppeval run` subprocess row")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="cProfile one extra run_evaluation and print its top N functions by cumulative time")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads here and OMP_NUM_THREADS for the subprocesses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="build in this directory and keep it")
    return parser.parse_args(argv)


def task_corpus() -> list[str]:
    """The shipped tasks' text (contexts and choices), to train the tokenizer on: about 20 tokens per context
    as with a real Llama tokenizer, instead of ~80 with the pseudo-word tokenizer of `scoring.py`."""
    from suites.accuracy import TASK_DIR

    corpus = []
    for file in sorted(TASK_DIR.glob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            corpus += [str(v) for v in doc.values() if isinstance(v, str)]
            corpus += [str(c) for c in doc.get("choices", [])]
    return corpus


def fixture_tokenizer(directory: Path, vocab: int, seed: int) -> Any:
    """A BPE tokenizer of exactly `vocab` tokens whose first merges come from the tasks' text (repeated, so they
    win), filled up with the pseudo-word text of `scoring.py`; it prepends `<s>` with add_special_tokens=True."""
    from scoring import _lexicon, _sampler

    rng = random.Random(seed)
    lexicon = _lexicon(rng, 2 * vocab)
    sample = _sampler(rng, lexicon)
    filler = [" ".join(sample(64)) for _ in range(vocab // 2)] + lexicon
    return build_corpus_tokenizer(directory, task_corpus() * 50 + filler, vocab)


# --------------------------------------------------------------------------- the two sides
def ppeval_config(base: Path, adapters: Sequence[Path], dtype: str, device: str, tasks: Sequence[str],
                  limit: int | None, max_batch_tokens: int, cache_dir: Path) -> dict[str, Any]:
    accuracy: dict[str, Any] = {"tasks": list(tasks)}
    if limit is not None:
        accuracy["limit"] = limit
    return {
        "model": {"base": str(base), "dtype": dtype, "device": device, "prompt_format": "plain",
                  "max_batch_tokens": max_batch_tokens},
        "subjects": [{"name": p.name, "adapter": str(p)} for p in adapters],
        "suites": {"accuracy": accuracy},
        "run": {"cache_dir": str(cache_dir)},
    }


def to_toml(raw: dict[str, Any]) -> str:
    """The config above as TOML (strings, numbers and lists of them; subjects as an array of tables)."""

    def value(v: Any) -> str:
        return json.dumps(v)  # JSON strings, numbers and flat lists are valid TOML

    lines = []
    for table in ("model", "run"):
        lines += [f"[{table}]", *(f"{k} = {value(v)}" for k, v in raw[table].items()), ""]
    for name, options in raw["suites"].items():
        lines += [f"[suites.{name}]", *(f"{k} = {value(v)}" for k, v in options.items()), ""]
    for subject in raw["subjects"]:
        lines += ["[[subjects]]", *(f"{k} = {value(v)}" for k, v in subject.items()), ""]
    return "\n".join(lines)


Metrics = dict[str, dict[str, float]]  # subject -> "<task>.<metric>" -> value


def ours_in_process(root: Path, tag: str, make_raw: Any,
                    profile: cProfile.Profile | None = None) -> tuple[float, Metrics, dict[str, str]]:
    """Seconds, metric values by subject, and each subject's content hash (its key in the result cache)."""
    from rich.console import Console

    from harness.config import parse_config
    from harness.runner import run_evaluation

    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    config = parse_config(make_raw(root / f"cache-{tag}"), source="benchmarks/accuracy_vs_lm_eval.py", base_dir=root)
    result = run_evaluation(config, out_dir=root / f"run-{tag}", suites=["accuracy"],
                            console=Console(stderr=True, quiet=True))
    if profile is not None:
        profile.disable()
    seconds = time.perf_counter() - start
    metrics = {subject: {k: m.value for k, m in suites["accuracy"].metrics.items()}
               for subject, suites in result.scorecard.results.items()}
    shas = {s.name: s.sha256 for s in result.scorecard.subjects}
    del result
    gc.collect()
    return seconds, metrics, shas


def subprocess_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_logged(cmd: Sequence[str], log: Path, env: dict[str, str], ok: Sequence[int] = (0,)) -> float:
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        code = subprocess.run(list(cmd), stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                              check=False).returncode
    seconds = time.perf_counter() - start
    if code not in ok:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        raise SystemExit(f"command failed with exit {code}: {' '.join(cmd)}\n{tail}")
    return seconds


def ours_cli(root: Path, tag: str, make_raw: Any, env: dict[str, str]) -> tuple[float, dict[str, dict[str, float]]]:
    config = root / f"config-{tag}.toml"
    config.write_text(to_toml(make_raw(root / f"cache-{tag}")), encoding="utf-8")
    out = root / f"run-{tag}"
    seconds = run_logged([sys.executable, "-m", "harness.cli", "run", str(config), "--out", str(out)],
                         root / f"ppeval-{tag}.log", env, ok=(0, 1))  # 1: a policy gate failed, not an error
    card = json.loads((out / "scorecard.json").read_text(encoding="utf-8"))
    metrics = {subject: {k: m["value"] for k, m in suites["accuracy"]["metrics"].items()}
               for subject, suites in card["results"].items()}
    return seconds, metrics


def lm_eval_tasks_dir(root: Path, tasks: Sequence[str]) -> Path:
    """The shipped task YAMLs, with their (relative) data files made absolute."""
    import yaml

    from suites.accuracy import TASK_DIR

    out = root / "lm_eval_tasks"
    out.mkdir(exist_ok=True)
    for name in tasks:
        config = yaml.safe_load((TASK_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
        files = config["dataset_kwargs"]["data_files"]
        for split, path in files.items():
            if not Path(path).is_absolute():
                files[split] = str(TASK_DIR / path)
        (out / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return out


def lm_eval_subject(root: Path, tag: str, subject: str, base: Path, adapter: Path | None, args: argparse.Namespace,
                    device: str, tasks: Sequence[str], include: Path, env: dict[str, str]) -> tuple[float, dict]:
    peft = f"peft={adapter}," if adapter else ""
    model_args = f"pretrained={base},{peft}add_bos_token=True,dtype={args.dtype}"
    out = root / f"lm_eval-{tag}-{subject}"
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", model_args,
           "--tasks", ",".join(tasks), "--include_path", str(include), "--batch_size", str(args.lm_eval_batch_size),
           "--device", device, "--output_path", str(out), "--log_samples"]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    seconds = run_logged(cmd, root / f"lm_eval-{tag}-{subject}.log", env)
    files = sorted(out.rglob("results_*.json"))
    if not files:
        raise SystemExit(f"lm_eval wrote no results file under {out}")
    results = json.loads(files[-1].read_text(encoding="utf-8"))["results"]
    values = {}
    for task, metrics in results.items():
        for key, value in metrics.items():
            metric, comma, _ = key.partition(",")  # "acc,none"; keys without a filter ("sample_len") are not metrics
            if comma and isinstance(value, int | float) and not metric.endswith("_stderr"):
                values[f"{task}.{metric}"] = float(value)
    return seconds, values


def compare_responses(cache_dir: Path, shas: dict[str, str], settings_key: str,
                      lm_eval_dirs: dict[str, Path]) -> dict[str, Any]:
    """Every request lm_eval logged (`--log_samples`) against ppeval's cached response for the same request:
    log-likelihoods (max |difference|), greedy flags and generated texts (before lm-eval's filters)."""
    from harness.cache import ResultCache
    from harness.requests import GenerateResponse, ScoreRequest, ScoreResponse
    from suites.accuracy.bridge import generate_request

    cache = ResultCache(cache_dir)
    stats: dict[str, Any] = {"ll": 0, "ll_max_diff": 0.0, "greedy_differ": 0, "gen": 0, "gen_differ": 0,
                             "missing": 0, "first_gen_difference": None}
    try:
        for subject, directory in lm_eval_dirs.items():
            pairs = []  # (our request, lm-eval's response: [log-likelihood, is_greedy] or the generated text)
            for file in sorted(directory.rglob("samples_*.jsonl")):
                for line in file.read_text(encoding="utf-8").splitlines():
                    sample = json.loads(line)
                    for i, resp in enumerate(sample["resps"]):
                        arg = sample["arguments"][f"gen_args_{i}"]
                        if isinstance(arg.get("arg_1"), dict):
                            pairs.append((generate_request(arg["arg_0"], arg["arg_1"]), resp[0]))
                        else:
                            pairs.append((ScoreRequest(arg["arg_0"], arg["arg_1"]), resp[0]))
            found = cache.get_many(shas[subject], settings_key, [r.key for r, _ in pairs])
            for request, theirs in pairs:
                mine = found.get(request.key)
                if mine is None:
                    stats["missing"] += 1
                elif isinstance(mine, ScoreResponse):
                    logprob, greedy = theirs  # (log-likelihood, is_greedy), both as strings
                    stats["ll"] += 1
                    stats["ll_max_diff"] = max(stats["ll_max_diff"], abs(mine.total_logprob - float(logprob)))
                    stats["greedy_differ"] += mine.is_greedy != (greedy == "True")
                elif isinstance(mine, GenerateResponse):
                    stats["gen"] += 1
                    if mine.text != theirs:
                        stats["gen_differ"] += 1
                        stats["first_gen_difference"] = stats["first_gen_difference"] or (subject, mine.text, theirs)
    finally:
        cache.close()
    return stats


def compare(ours: dict[str, dict[str, float]], theirs: dict[str, dict[str, float]]) -> list[str]:
    problems = []
    for subject, expected in theirs.items():
        got = ours.get(subject, {})
        if set(got) != set(expected):
            problems.append(f"{subject}: metric keys differ: ppeval {sorted(got)} vs lm_eval {sorted(expected)}")
        for key in sorted(set(got) & set(expected)):
            if abs(got[key] - expected[key]) > TOLERANCE:
                problems.append(f"{subject} {key}: ppeval {got[key]!r} vs lm_eval {expected[key]!r}")
    return problems


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import lm_eval

    from suites.accuracy import SHIPPED_TASKS

    device, size = start_run(args)
    shape = SHAPES[size]
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else list(SHIPPED_TASKS)
    if args.limit is None:
        args.limit = CPU_LIMIT if size == "cpu" else None
    elif args.limit <= 0:
        args.limit = None

    print("environment")
    for line in environment_lines(device, size, shape, dtype=args.dtype):
        print(f"  {line}")
    print(f"  lm-eval {lm_eval.__version__}; tasks {', '.join(tasks)}, limit {args.limit or 'all'}; base + "
          f"{args.adapters} adapters (LoRA r={args.rank}, 7 modules); lm_eval --batch_size {args.lm_eval_batch_size}, "
          f"ppeval max_batch_tokens {args.max_batch_tokens}; repeats {args.repeats}")
    sys.stdout.flush()

    holder, root = scratch_dir(args.keep, "ppeval-bench-acc-")
    os.environ["HF_DATASETS_CACHE"] = str(root / "hf-datasets")  # shared by both sides, inherited by subprocesses
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        # ---------------------------------------------------------------- build
        t0 = time.perf_counter()
        base_dir = root / "base"
        tokenizer = fixture_tokenizer(base_dir, shape.vocab, args.seed)
        # the model's vocabulary must equal len(tokenizer): with `peft=`, lm-eval's HFLM resizes the embeddings to
        # len(tokenizer) otherwise (huggingface.py, "Resizing model embedding layer"), which changes every log-prob
        model = build_base(base_dir, dataclasses.replace(shape, dtype=args.dtype), len(tokenizer), device, args.seed)
        adapter_dirs = build_adapters(model, root, args.adapters, args.rank, args.seed)
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        include = lm_eval_tasks_dir(root, tasks)
        env = subprocess_env(args.threads)
        print(f"\nbuilt fixtures in {time.perf_counter() - t0:.1f} s")

        def make_raw(cache_dir: Path, limit: int | None = args.limit) -> dict[str, Any]:
            return ppeval_config(base_dir, adapter_dirs, args.dtype, device.type, tasks, limit,
                                 args.max_batch_tokens, cache_dir)

        # warm-up (untimed): imports, the datasets cache of the task file, page cache of the weights
        t0 = time.perf_counter()
        ours_in_process(root, "warmup", lambda cache: make_raw(cache, limit=2))
        print(f"warm-up (ppeval, limit 2) {time.perf_counter() - t0:.1f} s\n")
        sys.stdout.flush()

        # ---------------------------------------------------------------- timed, interleaved
        subjects: list[tuple[str, Path | None]] = [("base", None), *((p.name, p) for p in adapter_dirs)]
        times: dict[str, list[float]] = {"ours": [], "cli": [], "lm_eval": []}
        per_subject: dict[str, list[float]] = {name: [] for name, _ in subjects}
        ours = cli = theirs = {}
        shas: dict[str, str] = {}
        for rep in range(args.repeats):
            seconds, ours, shas = ours_in_process(root, f"r{rep}", make_raw)
            times["ours"].append(seconds)
            if not args.no_cli:
                seconds, cli = ours_cli(root, f"cli{rep}", make_raw, env)
                times["cli"].append(seconds)
            total, theirs = 0.0, {}
            for name, adapter in subjects:
                seconds, theirs[name] = lm_eval_subject(root, f"r{rep}", name, base_dir, adapter, args, device.type,
                                                        tasks, include, env)
                per_subject[name].append(seconds)
                total += seconds
            times["lm_eval"].append(total)
            print(f"  repeat {rep + 1}: ppeval run_evaluation {times['ours'][-1]:.1f} s"
                  + (f", ppeval run (CLI) {times['cli'][-1]:.1f} s" if times["cli"] else "")
                  + f", lm_eval x {len(subjects)} {total:.1f} s (load average {loadavg()})")
            sys.stdout.flush()

        # ---------------------------------------------------------------- report
        peer = median(times["lm_eval"])
        rows = [(f"lm_eval x {len(subjects)} subjects (subprocesses)", peer)]
        rows.append(("ppeval run_evaluation (in process)", median(times["ours"])))
        if times["cli"]:
            rows.append(("ppeval run (CLI subprocess)", median(times["cli"])))
        print(f"\n{'measurement':<44}{'median s':>10}{'speed-up':>10}")
        for name, seconds in rows:
            print(f"{name:<44}{seconds:>10.2f}{peer / seconds:>10.2f}")
        print("  lm_eval per subject: " + ", ".join(f"{n} {median(v):.1f} s" for n, v in per_subject.items()))
        ratio = peer / median(times["ours"])
        print(f"\nload average at the end {loadavg()}")
        print(f"lm_eval / ppeval run_evaluation wall-time ratio: {ratio:.2f}  (PERF.md target >= {TARGET_RATIO:g}: "
              f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")
        if times["cli"]:
            print(f"lm_eval / ppeval run (CLI) wall-time ratio: {peer / median(times['cli']):.2f}")

        problems = compare(ours, theirs) + (compare(cli, theirs) if times["cli"] else [])
        from harness.engine import engine_settings

        settings = engine_settings(base_dir, dtype=args.dtype, device=device.type, prompt_format="plain")
        last = args.repeats - 1
        responses = compare_responses(root / f"cache-r{last}", shas, settings.key,
                                      {name: root / f"lm_eval-r{last}-{name}" for name, _ in subjects})
        n_values = sum(len(v) for v in theirs.values())
        print(f"check: {n_values} metric values ({len(subjects)} subjects) equal to lm_eval's within {TOLERANCE:g}: "
              f"{'yes' if not problems else f'NO, {len(problems)} differ'}")
        for subject in theirs:
            print(f"  {subject}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(theirs[subject].items())))
        r = responses
        strict = args.dtype == "float32"
        same = (r["ll"] > 0 and r["ll_max_diff"] < LL_TOLERANCE and not r["greedy_differ"] and not r["gen_differ"]
                and not r["missing"])
        print(f"check: per request, ppeval's cached responses vs lm_eval's logged ones: {r['ll']} log-likelihoods, "
              f"max |difference| {r['ll_max_diff']:.2e}, greedy flags differing {r['greedy_differ']}; "
              f"{r['gen']} generations, differing {r['gen_differ']}; requests not found {r['missing']}: "
              f"{'same' if same else 'DIFFERENT'}{'' if strict else ' (not required in ' + args.dtype + ')'}")
        if r["first_gen_difference"]:
            print(f"  first differing generation (subject, ppeval, lm_eval): {r['first_gen_difference']!r}")
        for problem in problems:
            print(f"  MISMATCH {problem}")
        if strict and not same:
            problems.append("per-request responses differ")
        if args.profile:
            profile = cProfile.Profile()
            ours_in_process(root, "profile", make_raw, profile=profile)
            buffer = io.StringIO()
            pstats.Stats(profile, stream=buffer).sort_stats("cumulative").print_stats(args.profile)
            print("\ncProfile of one run_evaluation (sorted by cumulative time):")
            print(buffer.getvalue())
        if problems:
            return 1
    finally:
        if holder is not None:
            holder.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
