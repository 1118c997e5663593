"""The subject-major runner: config → subjects → plan → engine → responses → scores → scorecard.

Every subject is activated at most once per run; all suites' requests for it are deduplicated and
answered inside that window, and each finished batch goes to the cache at once, so an interrupted
run resumes where it stopped and a run with one more adapter reuses every base result.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.cache import ResultCache, default_cache_dir
from harness.config import RunConfig, dump_config
from harness.errors import MissingData, RunFailure
from harness.gates import apply_policy, gates_passed
from harness.integrity import write_integrity
from harness.io import atomic_write_text, publish_directory
from harness.registry import get_suite, suite_names
from harness.reports import render_markdown
from harness.reports.annex import render_annex_markdown
from harness.reports.html import render_html
from harness.requests import GenerateRequest, Request, Response, ScoreRequest, ScoreResponse
from harness.scorecard import MetricResult, RunInfo, Scorecard, SubjectInfo, SuiteResult
from harness.stats import estimate
from harness.subjects import Subject, resolve_subjects
from harness.suite import Responses, Suite, SuiteContext, SuiteOutcome, SuitePlan

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


def _default_engine(config: RunConfig) -> Any:
    from harness.engine import Engine

    m = config.model
    return Engine(m.base, dtype=m.dtype, device=m.device, prompt_format=m.prompt_format,
                  trust_remote_code=m.trust_remote_code, allow_pickle=m.allow_pickle,
                  max_batch_tokens=m.max_batch_tokens, device_map=m.device_map, max_memory=m.max_memory,
                  offload_dir=m.offload_dir, static_cache=m.static_cache)


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


class _Collector:
    """Gathers a subject's responses and commits each batch to the cache as it arrives."""

    def __init__(self, cache: ResultCache, subject: Subject, settings_key: str, progress: Progress, task: Any):
        self.cache, self.subject, self.settings_key = cache, subject, settings_key
        self.progress, self.task = progress, task
        self.responses: dict[str, Response] = {}

    def sink(self, requests: Sequence[Request]) -> Callable[[list[int], Sequence[Response]], None]:
        def on_batch(indices: list[int], responses: Sequence[Response]) -> None:
            items = [(requests[i].key, r) for i, r in zip(indices, responses, strict=True)]
            self.cache.put_many(self.subject.sha256, self.settings_key, items)
            self.responses.update(items)
            self.progress.advance(self.task, len(items))

        return on_batch


def answer_all(
    config: RunConfig, subjects: Sequence[Subject], requests: Sequence[Request], cache: ResultCache,
    engine_factory: EngineFactory, console: Console, stats: RunStats,
) -> tuple[dict[str, dict[str, Response]], dict[str, list[str]]]:
    """Subject-major: for each subject, what the cache lacks is computed in one activation."""
    from harness.engine import engine_settings

    m = config.model
    settings = engine_settings(m.base, dtype=m.dtype, device=m.device, prompt_format=m.prompt_format)
    engine = None
    responses: dict[str, dict[str, Response]] = {}
    notes: dict[str, list[str]] = {s.name: [] for s in subjects}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        for subject in subjects:
            found = cache.get_many(subject.sha256, settings.key, (r.key for r in requests))
            missing = [r for r in requests if r.key not in found]
            stats.cached[subject.name], stats.computed[subject.name] = len(found), len(missing)
            task = progress.add_task(subject.name, total=len(missing))
            collector = _Collector(cache, subject, settings.key, progress, task)
            if missing:
                engine = engine or engine_factory(config)
                notes[subject.name] += engine.activate(subject)
                stats.activations += 1
                try:
                    scores = [r for r in missing if isinstance(r, ScoreRequest)]
                    gens = [r for r in missing if isinstance(r, GenerateRequest)]
                    if scores:
                        engine.score(scores, on_batch=collector.sink(scores))
                    if gens:
                        engine.generate(gens, on_batch=collector.sink(gens))
                finally:
                    engine.deactivate()
            responses[subject.name] = {**found, **collector.responses}
    return responses, notes


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
                            missing=dict(outcome.missing), details=outcome.details.get(s.name, {}))
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


def run_evaluation(
    config: RunConfig,
    *,
    out_dir: Path | None = None,
    suites: Sequence[str] | None = None,
    limit: int | None = None,
    engine_factory: EngineFactory = _default_engine,
    console: Console | None = None,
    sign_key: Any = None,
    workers: int | None = None,
) -> RunResult:
    """Run every chosen suite on every subject and write the run directory; returns the scorecard.
    `workers` > 1 (or `[execution] backend = "ray"`) shards the subjects across Ray workers."""
    from harness.engine import environment

    console = console or Console(stderr=True)
    workers = workers or config.execution.workers
    sharded = workers > 1 or config.execution.backend == "ray"
    if sharded:
        from harness.workers import require_ray

        require_ray()  # before any work: a missing extra is bad input (exit 2)
    started = datetime.now(timezone.utc)
    subjects = resolve_subjects(config)
    suite_objs = build_suites(config, suites, limit, console)
    plans = [s.plan() for s in suite_objs]
    requests = _unique(plans)
    stats = RunStats()
    if sharded:
        from harness.workers import answer_on_ray

        console.print(f"sharding {len(subjects)} subjects over {workers} Ray worker(s)")
        responses, engine_notes = answer_on_ray(config, subjects, requests, engine_factory, stats,
                                                workers=workers, address=config.execution.address)
    else:
        cache = ResultCache(config.run.cache_dir or default_cache_dir() / "results")
        try:
            responses, engine_notes = answer_all(config, subjects, requests, cache, engine_factory, console, stats)
        finally:
            cache.close()
    sanity = _sanity_notes(subjects, responses)
    notes = {name: engine_notes[name] + sanity[name] for name in engine_notes}
    names = [s.name for s in subjects]
    results: dict[str, dict[str, SuiteResult]] = {name: {} for name in names}
    samples: list[dict[str, Any]] = []
    for suite, plan in zip(suite_objs, plans, strict=True):
        try:
            outcome = suite.score(Responses(names, responses))
        except Exception as exc:  # a suite bug must not lose the other suites' work
            raise RunFailure(f"suite {suite.name!r} failed while scoring: {exc!r}") from exc
        for name, result in _score_suite(suite, plan, outcome, subjects, notes, config).items():
            results[name][suite.name] = result
        samples += [{"suite": suite.name, **sample} for sample in outcome.samples]

    config_text = dump_config(config)
    tags = {s.name: dict(s.tags) for s in config.subjects}
    run_id = f"{started:%Y%m%d-%H%M%S}-{config.sha256()[:8]}"
    scorecard = Scorecard(
        run=RunInfo(
            id=run_id, started_at=started.isoformat(), finished_at=datetime.now(timezone.utc).isoformat(),
            harness_version=harness_version(), config_sha256=config.sha256(), seed=config.run.seed,
            env=environment(), suites={s.name: s.version for s in suite_objs},
        ),
        subjects=[SubjectInfo(name=s.name, kind=s.kind, path=str(s.path), sha256=s.sha256, tags=tags.get(s.name, {}))
                  for s in subjects],
        results=results,
    )
    scorecard.gates = apply_policy(scorecard, config.policy)
    scorecard.passed = gates_passed(scorecard.gates)
    run_dir = out_dir or Path("reports") / run_id
    _write_run_dir(run_dir, scorecard, samples, config_text, sign_key=sign_key)
    return RunResult(scorecard, run_dir, stats)


def _write_run_dir(run_dir: Path, scorecard: Scorecard, samples: list[dict[str, Any]], config_text: str,
                   sign_key: Any = None) -> None:
    """Write every file into a staging directory, then move it into place in one rename; the manifest goes last
    (`sign_key`: an Ed25519 private key, to sign it)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    scorecard.write(staging / "scorecard.json")
    atomic_write_text(staging / "scorecard.md", render_markdown(scorecard))
    atomic_write_text(staging / "report.html", render_html(scorecard, samples))
    atomic_write_text(staging / "config.toml", config_text)
    atomic_write_text(staging / "samples.jsonl", "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    atomic_write_text(staging / "annex.md", render_annex_markdown(scorecard))
    write_integrity(staging, scorecard.run.id, sign_key)  # last: hashes every file written above
    publish_directory(staging, run_dir)
