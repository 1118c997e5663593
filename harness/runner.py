"""The subject-major runner: config → subjects → plan → engine → responses → scores → scorecard.

Every subject is activated at most once per run; all suites' requests for it are deduplicated and
answered inside that window, and each finished batch goes to the cache at once, so an interrupted
run resumes where it stopped and a run with one more adapter reuses every base result.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.backends import Backend, make_backend, run_environment
from harness.cache import ResultCache, default_cache_dir
from harness.config import RunConfig, dump_config
from harness.errors import InputError, MissingData
from harness.gates import apply_policy, check_policy_metrics, gates_passed
from harness.integrity import write_integrity
from harness.io import atomic_write_text, check_output_dir, make_staging_dir, publish_directory
from harness.lineage import subject_lineage
from harness.metrics import MetricSpec, is_headline, suite_specs
from harness.registry import get_suite, metric_specs, suite_names
from harness.reports import RenderInput, render_files
from harness.requests import GenerateRequest, Request, Response, ScoreRequest, ScoreResponse
from harness.scorecard import MetricResult, RunInfo, Scorecard, SubjectInfo, SuiteResult, apply_fdr
from harness.stats import estimate
from harness.subjects import Subject
from harness.suite import Responses, Suite, SuiteContext, SuiteOutcome, SuitePlan

#: A custom engine for the `hf` backend (tests count or crash engines through it); see `harness.backends`.
EngineFactory = Callable[[RunConfig], Any]


@dataclass
class RunStats:
    """What the run computed versus what it found in the cache, per subject."""

    computed: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    activations: int = 0


@dataclass(frozen=True)
class RunResult:
    scorecard: Scorecard
    run_dir: Path
    stats: RunStats
    failures: dict[str, str] = field(default_factory=dict)  # suite -> the error that stopped its scoring


def _default_engine(config: RunConfig) -> Any:
    """The `hf` backend's engine for `config` (kept for callers of the engine-factory seam)."""
    from harness.backends.hf import default_engine

    return default_engine(config)


def harness_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ppeval")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0+source"


def build_suites(
    config: RunConfig, names: Sequence[str] | None, limit: int | None, console: Console | None = None
) -> list[Suite]:
    """Instantiate the chosen suites: `names`, else the config's, else every registered suite whose
    data the config provides (the others are skipped with a message)."""
    explicit = list(names or config.suites)
    context = SuiteContext(data=config.data, seed=config.run.seed, limit=limit,
                           prompt_format=config.model.prompt_format)
    suites: list[Suite] = []
    for name in explicit or suite_names():
        try:
            suites.append(get_suite(name)(config.suites.get(name, {}), context))
        except MissingData as exc:
            if explicit:
                raise
            if console is not None:
                console.print(f"[yellow]skipping suite {name}:[/] {exc}")
    return suites


def _unique(plans: Sequence[SuitePlan]) -> list[Request]:
    seen: dict[str, Request] = {}
    for plan in plans:
        for request in plan.requests:
            seen.setdefault(request.key, request)
    return list(seen.values())


def answer_all(
    config: RunConfig, subjects: Sequence[Subject], requests: Sequence[Request], cache: ResultCache,
    backend: Backend, console: Console, stats: RunStats,
) -> tuple[dict[str, dict[str, Response]], dict[str, list[str]]]:
    """What the cache lacks for each subject goes to the backend in one `serve` call (the `hf` backend answers
    it subject-major, one activation per subject); every finished batch is committed to the cache at once."""
    settings_key = backend.settings().key
    responses: dict[str, dict[str, Response]] = {}
    notes: dict[str, list[str]] = {s.name: [] for s in subjects}
    work: list[tuple[Subject, list[Request]]] = []
    for subject in subjects:
        responses[subject.name] = cache.get_many(subject.sha256, settings_key, (r.key for r in requests))
        missing = [r for r in requests if r.key not in responses[subject.name]]
        stats.cached[subject.name], stats.computed[subject.name] = len(responses[subject.name]), len(missing)
        if missing:
            work.append((subject, missing))
    if not work:
        return responses, notes
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    lines = None if console.is_terminal else ProgressLines(console, {s.name: len(m) for s, m in work})
    with Progress(*columns, console=console, transient=True) as progress:
        tasks = {subject.name: progress.add_task(subject.name, total=len(missing)) for subject, missing in work}

        def sink(subject: Subject, answered: Sequence[Request], batch: Sequence[Response]) -> None:
            items = [(r.key, response) for r, response in zip(answered, batch, strict=True)]
            cache.put_many(subject.sha256, settings_key, items)
            responses[subject.name].update(items)
            progress.advance(tasks[subject.name], len(items))
            if lines is not None:  # CI logs: no live bar, so plain lines at a bounded rate
                phase = "generate" if answered and isinstance(answered[0], GenerateRequest) else "score"
                lines.advance(subject.name, phase, len(items))

        for name, subject_notes in backend.serve(work, sink).items():
            notes[name] += subject_notes
        stats.activations += len(work)
    return responses, notes


class ProgressLines:
    """Progress for a console that is not a terminal: `progress: <subject> <phase> done/total (pct) ETA`, at most
    one line every `interval` seconds, plus each subject's last line."""

    def __init__(self, console: Console, totals: dict[str, int], interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.totals, self.interval, self.clock = console, totals, interval, clock
        self.done = dict.fromkeys(totals, 0)
        self.started: dict[str, float] = {}
        self.last = -math.inf

    def advance(self, subject: str, phase: str, n: int) -> None:
        now = self.clock()
        self.started.setdefault(subject, now)
        self.done[subject] = self.done.get(subject, 0) + n
        done, total = self.done[subject], self.totals.get(subject, 0)
        if now - self.last < self.interval and done < total:
            return
        self.last = now
        elapsed = now - self.started[subject]
        eta = "?" if done == 0 else _duration(elapsed / done * max(total - done, 0))
        pct = 100 * done / total if total else 100.0
        self.console.print(f"progress: {subject} {phase} {done}/{total} ({pct:.0f}%) elapsed {_duration(elapsed)} "
                           f"ETA {eta}", highlight=False, markup=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _cut_notes(subjects: Sequence[Subject], responses: dict[str, dict[str, Response]],
               max_length: int) -> dict[str, list[str]]:
    """How many requests were longer than the model's context and were cut to their last tokens."""
    notes: dict[str, list[str]] = {s.name: [] for s in subjects}
    for subject in subjects:
        cut = sum(1 for r in responses[subject.name].values() if r.truncated)
        if cut:
            notes[subject.name].append(
                f"{cut} of this run's {len(responses[subject.name])} requests (all suites) were longer than the "
                f"model's context ({max_length} tokens; a generation prompt also leaves room for its new tokens) and "
                "were cut to their last tokens")
    return notes


def _sanity_notes(subjects: Sequence[Subject], responses: dict[str, dict[str, Response]]) -> dict[str, list[str]]:
    """Alarms: non-finite log-probs, and a fine-tune whose scores equal the base's (not applied?)."""
    notes: dict[str, list[str]] = {s.name: [] for s in subjects}
    base = responses.get("base", {})
    for subject in subjects:
        own = responses[subject.name]
        scored = {k: r for k, r in own.items() if isinstance(r, ScoreResponse)}
        bad = sum(1 for r in scored.values() if not all(math.isfinite(x) for x in r.token_logprobs))
        if bad:
            notes[subject.name].append(f"{bad} scored item(s) had NaN/inf log-probabilities")
        if subject.kind != "base" and scored and all(
            k in base and isinstance(base[k], ScoreResponse)
            and all(abs(a - b) < 1e-6 for a, b in zip(r.token_logprobs, base[k].token_logprobs, strict=True))  # type: ignore[union-attr]
            for k, r in scored.items()
        ):
            notes[subject.name].append(
                "ALARM: outputs identical to the base on every scored item; the fine-tune has no effect "
                "(not applied, or zero-initialised)"
            )
    return notes


def _score_suite(
    suite: Suite, plan: SuitePlan, outcome: SuiteOutcome, subjects: Sequence[Subject], notes: dict[str, list[str]],
    config: RunConfig,
) -> dict[str, SuiteResult]:
    results = {
        s.name: SuiteResult(suite_version=suite.version, data_sha256=plan.data_sha256,
                            notes=[*outcome.notes.get("*", []), *outcome.notes.get(s.name, []), *notes[s.name]],
                            missing={**outcome.missing, **outcome.missing_by_subject.get(s.name, {})},
                            details=outcome.details.get(s.name, {}))
        for s in subjects
    }
    for key, observations in outcome.metrics.items():
        estimates = estimate(observations, n_resamples=config.run.bootstrap_resamples, seed=config.run.seed)
        for name, est in estimates.items():
            if math.isfinite(est.value):
                results[name].metrics[key] = MetricResult.from_estimate(est)
            else:
                results[name].missing[key] = "not computable (non-finite value)"
    return results


def _check_capabilities(backend: Backend, suites: Sequence[Suite], plans: Sequence[SuitePlan]) -> None:
    """Refuse, before any work, suites whose every request needs what the backend cannot compute (scoring on a
    server without prompt log-probs). Vocabulary statistics are not refused: a backend without them answers
    without, and the suite reports Min-K%++ missing with the reason."""
    capabilities = backend.capabilities
    if capabilities.prompt_logprobs:
        return
    needs = [s.name for s, p in zip(suites, plans, strict=True) if any(isinstance(r, ScoreRequest) for r in p.requests)]
    if needs:
        raise InputError(f"suite(s) {', '.join(needs)} score continuations, which the {backend.kind} backend cannot: "
                         f"{capabilities.why_not('prompt_logprobs')}; leave them out with --suites")


def run_evaluation(
    config: RunConfig,
    *,
    out_dir: Path | None = None,
    suites: Sequence[str] | None = None,
    limit: int | None = None,
    engine_factory: EngineFactory | None = None,
    backend: Backend | None = None,
    console: Console | None = None,
    sign_key: Any = None,
    workers: int | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Run every chosen suite on every subject and write the run directory; returns the scorecard.
    `backend` (default: `[backend]`'s, `harness.backends.make_backend`) answers the requests (`engine_factory`: a
    custom engine for the `hf` backend); `workers` > 1 (or `[execution] mode = "ray"`) shards the subjects across
    Ray workers; `out_dir` must be
    new, or an earlier run directory with `overwrite` (checked before any work, `harness.io.check_output_dir`)."""
    if out_dir is not None:
        check_output_dir(out_dir, overwrite=overwrite)

    console = console or Console(stderr=True)
    config = record_options(config, suites=suites, limit=limit, workers=workers)
    workers = config.execution.workers
    sharded = workers > 1 or config.execution.mode == "ray"
    if sharded:
        from harness.workers import require_ray

        require_ray()  # before any work: a missing extra is bad input (exit 2)
    started = datetime.now(timezone.utc)
    backend = backend or make_backend(config, engine_factory)
    subjects = backend.subjects(config)
    check_gates_early(config)  # before any suite or model loads: a gate typo costs seconds, not the run
    suite_objs = build_suites(config, None, config.run.limit, console)
    plans = [s.plan() for s in suite_objs]
    requests = _unique(plans)
    _check_capabilities(backend, suite_objs, plans)
    stats = RunStats()
    if sharded:
        from harness.workers import answer_on_ray

        console.print(f"sharding {len(subjects)} subjects over {workers} Ray worker(s)")
        responses, engine_notes = answer_on_ray(config, subjects, requests, backend, stats,
                                                workers=workers, address=config.execution.address)
    else:
        cache = ResultCache(config.run.cache_dir or default_cache_dir() / "results")
        try:
            responses, engine_notes = answer_all(config, subjects, requests, cache, backend, console, stats)
        finally:
            cache.close()
    engine_env = backend.environment()
    backend.close()
    cut = _cut_notes(subjects, responses, backend.settings().max_length)
    sanity = _sanity_notes(subjects, responses)
    notes = {name: engine_notes[name] + cut[name] + sanity[name] for name in engine_notes}
    names = [s.name for s in subjects]
    results: dict[str, dict[str, SuiteResult]] = {name: {} for name in names}
    samples: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    for suite, plan in zip(suite_objs, plans, strict=True):
        try:
            outcome = suite.score(Responses(names, responses))
        except Exception as exc:  # a suite bug must not lose the other suites' work: its metrics go missing
            failures[suite.name] = f"{type(exc).__name__}: {exc}"
            outcome = _failed_outcome(suite, failures[suite.name])
        for name, result in _score_suite(suite, plan, outcome, subjects, notes, config).items():
            results[name][suite.name] = result
            result.error = failures.get(suite.name)
        samples += [{"suite": suite.name, **sample} for sample in outcome.samples]
    declared = {s.name: suite_specs(type(s)) for s in suite_objs}
    family_sizes = apply_fdr(results, fdr_family(declared))

    config_text = dump_config(config)
    tags = {s.name: dict(s.tags) for s in config.subjects}
    lineages = subject_lineage(config, subjects)
    run_id = f"{started:%Y%m%d-%H%M%S}-{config.sha256()[:8]}"
    scorecard = Scorecard(
        run=RunInfo(
            id=run_id, started_at=started.isoformat(), finished_at=datetime.now(timezone.utc).isoformat(),
            harness_version=harness_version(), config_sha256=config.sha256(), seed=config.run.seed,
            env=run_environment(engine_env), engine=engine_env, suites={s.name: s.version for s in suite_objs},
        ),
        subjects=[SubjectInfo(name=s.name, kind=s.kind, path=str(s.path), sha256=s.sha256, tags=tags.get(s.name, {}),
                              lineage=lineages[s.name]) for s in subjects],
        results=results,
        notes=[fdr_note(family_sizes)] if family_sizes else [],
        options=recorded_options(config),
    )
    scorecard.gates = apply_policy(scorecard, config.policy, declared)
    scorecard.passed = gates_passed(scorecard.gates)
    run_dir = out_dir or Path("reports") / run_id
    _write_run_dir(run_dir, scorecard, samples, config_text, sign_key=sign_key, overwrite=overwrite)
    return RunResult(scorecard, run_dir, stats, failures)


def record_options(config: RunConfig, *, suites: Sequence[str] | None, limit: int | None,
                   workers: int | None) -> RunConfig:
    """The config with the CLI options that change the run written in (`--suites` as the `[suites]` table,
    `--limit` as `run.limit`, `--workers` as `execution.workers`), so its dump reproduces the run."""
    update: dict[str, Any] = {}
    if suites:
        update["suites"] = {name: dict(config.suites.get(name, {})) for name in suites}
    if limit is not None:
        update["run"] = config.run.model_copy(update={"limit": limit})
    if workers is not None:
        update["execution"] = config.execution.model_copy(update={"workers": workers})
    return config.model_copy(update=update) if update else config


def recorded_options(config: RunConfig) -> dict[str, Any]:
    """What the scorecard records of the options above."""
    return {"limit": config.run.limit, "suites": sorted(config.suites) or None, "workers": config.execution.workers}


def check_gates_early(config: RunConfig) -> None:
    """Check the policy's metric names against the selected suites' declarations (no suite is built)."""
    selected = list(config.suites) or suite_names()
    declared = {name: metric_specs(name) for name in selected}
    check_policy_metrics(config.policy, declared, left_out=tuple(n for n in suite_names() if n not in declared))


def _failed_outcome(suite: Suite, error: str) -> SuiteOutcome:
    """What a suite whose `score()` raised leaves: every declared metric missing, with the error."""
    why = f"suite failed while scoring: {error}"
    keys = [spec.key for spec in suite_specs(type(suite)) if not spec.is_pattern] or ["*"]
    return SuiteOutcome(missing={key: why for key in keys}, notes={"*": [f"FAILED: {why}"]})


def fdr_family(declared: dict[str, tuple[MetricSpec, ...]]) -> Callable[[str, str, str], str]:
    """The false-discovery families: per subject, its headline deltas, and apart its breakdown deltas."""

    def family(subject: str, suite: str, key: str) -> str:
        return f"{subject}/{'headline' if is_headline(declared.get(suite, ()), key) else 'breakdown'}"

    return family


def fdr_note(sizes: dict[str, int]) -> str:
    """The run-level note stating the false-discovery families and their sizes."""
    head = sorted(n for f, n in sizes.items() if f.endswith("/headline"))
    brk = sorted(n for f, n in sizes.items() if f.endswith("/breakdown"))

    def span(ns: list[int]) -> str:
        return "none" if not ns else (f"{ns[0]}" if ns[0] == ns[-1] else f"{ns[0]}–{ns[-1]}")

    return ("False discovery rate: Benjamini–Hochberg (q ≤ 0.05) within two families per subject over every suite "
            f"of the run: its headline deltas ({span(head)} per subject) and its breakdown deltas ({span(brk)}). "
            "⚠/✓ marks, flags and `only_significant` gates use the q-value; `significant` alone is the raw 95% "
            "interval.")


def _write_run_dir(run_dir: Path, scorecard: Scorecard, samples: list[dict[str, Any]], config_text: str,
                   sign_key: Any = None, overwrite: bool = False) -> None:
    """Write every file into a staging directory, then move it into place in one rename; the manifest goes last
    (`sign_key`: an Ed25519 private key, to sign it). The staging directory never outlives a failure."""
    staging = make_staging_dir(run_dir)
    try:
        _write_files(staging, scorecard, samples, config_text, sign_key)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish_directory(staging, run_dir, overwrite=overwrite)


def _write_files(staging: Path, scorecard: Scorecard, samples: list[dict[str, Any]], config_text: str,
                 sign_key: Any) -> None:
    scorecard.write(staging / "scorecard.json")
    for name, text in render_files(RenderInput(scorecard, samples)).items():  # the registry `report` uses too
        atomic_write_text(staging / name, text)
    atomic_write_text(staging / "config.toml", config_text)
    atomic_write_text(staging / "samples.jsonl", "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    write_integrity(staging, scorecard.run.id, sign_key)  # last: hashes every file written above
