"""Accuracy: lm-eval tasks on every subject, with lm-eval's own prompts, filters and metrics.

lm-eval runs twice through `BridgeLM`: once recording the requests it would make (the plan), and once
per subject replaying the engine's responses (the score), so numbers are lm-eval's while the model is
loaded once and batched and cached by the engine. Metric keys are `<task>.<metric>` (with `.<filter>`
when a task has several filters). Intervals are the harness's percentile bootstrap over documents
(the same resamples give the paired delta), not lm-eval's stderr.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from harness.errors import InputError, did_you_mean
from harness.offline import go_offline
from harness.requests import Request
from harness.stats import Observations
from harness.suite import Responses, SuiteContext, SuiteOptions, SuiteOutcome, SuitePlan, parse_options
from suites.accuracy.metrics_spec import METRICS

TASK_DIR = Path(__file__).parent / "tasks"
SHIPPED_TASKS = ("support_name_mc", "support_name_gen")


class AccuracyOptions(SuiteOptions):
    tasks: list[str] = Field(default_factory=lambda: list(SHIPPED_TASKS))
    include_path: Path | None = None
    num_fewshot: int | None = None
    limit: int | None = None


def _resolve_data_files(config: dict[str, Any], yaml_dir: Path) -> dict[str, Any] | None:
    """A copy of a task config whose relative local data files point into the YAML's directory, or None."""
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if not isinstance(files, Mapping):
        return None
    resolved = {k: str(yaml_dir / v) if isinstance(v, str) and not Path(v).is_absolute() else v
                for k, v in files.items()}
    if resolved == dict(files):
        return None
    return {**config, "dataset_kwargs": {**config["dataset_kwargs"], "data_files": resolved}}


def _check_metrics_are_local(name: str, config: Mapping[str, Any]) -> None:
    """Refuse metrics lm-eval would load through `evaluate` from the Hugging Face hub."""
    from lm_eval.api.registry import METRIC_REGISTRY

    for entry in config.get("metric_list") or []:
        metric = entry.get("metric") if isinstance(entry, Mapping) else None
        if isinstance(metric, str) and metric not in METRIC_REGISTRY:
            raise InputError(
                f"accuracy task {name!r}: metric {metric!r} is not built into lm-eval and would be fetched from "
                f"the Hugging Face hub through `evaluate`; ppeval runs offline. Local metrics: "
                f"{', '.join(sorted(METRIC_REGISTRY))}"
            )


def _data_missing(name: str, exc: Exception) -> InputError:
    return InputError(
        f"accuracy task {name!r}: its dataset is not on disk ({type(exc).__name__}: {exc}). ppeval never downloads: "
        "download it once elsewhere, then either point the task YAML at local files (`dataset_path: json`, "
        "`dataset_kwargs: {data_files: {test: /path/file.jsonl}}`) or copy the Hugging Face datasets cache to "
        "~/.cache/huggingface/datasets on this machine"
    )


class AccuracySuite:
    """lm-eval tasks (shipped demo-domain tasks by default) through the engine."""

    name: ClassVar[str] = "accuracy"
    version: ClassVar[str] = "1"
    options_model: ClassVar[type[AccuracyOptions]] = AccuracyOptions
    metrics = METRICS  # declarations: metrics_spec.py

    def __init__(self, options: Mapping[str, Any], context: SuiteContext) -> None:
        self.options = parse_options(self.name, self.options_model, options)
        self.limit = self.options.limit or context.limit
        if self.options.include_path is not None and not self.options.include_path.is_dir():
            raise InputError(f"`suites.accuracy.include_path` = {str(self.options.include_path)!r} is not a directory")
        self.requests: dict[str, Request] = {}
        self.data_sha256 = ""

    def _task_dict(self) -> dict[str, Any]:
        """Fresh lm-eval Task objects (evaluate() mutates them), offline."""
        go_offline()  # already set when `harness` was imported; here for a suite imported on its own
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        from lm_eval.tasks import TaskManager, get_task_dict

        include = [str(TASK_DIR)] + ([str(self.options.include_path)] if self.options.include_path else [])
        builtin = any(t not in SHIPPED_TASKS for t in self.options.tasks) and self.options.include_path is None
        manager = TaskManager(include_path=include, include_defaults=builtin, verbosity="ERROR")
        specs: list[Any] = []
        for name in self.options.tasks:
            entry = manager._entry(name)  # lm-eval's index of task YAMLs (config before instantiation)
            if entry is None:
                raise InputError(f"accuracy: unknown lm-eval task {name!r}{did_you_mean(name, manager.all_tasks)}")
            config = entry.cfg if isinstance(entry.cfg, dict) else {}
            _check_metrics_are_local(name, config)
            local = _resolve_data_files(config, Path(entry.yaml_path).parent) if entry.yaml_path else None
            specs.append(local or name)
        try:
            tasks = get_task_dict(specs, manager)
        except (FileNotFoundError, ConnectionError, OSError) as exc:
            raise _data_missing(",".join(self.options.tasks), exc) from None
        except Exception as exc:
            if "offline" in str(exc).lower() or "not found" in str(exc).lower():
                raise _data_missing(",".join(self.options.tasks), exc) from None
            raise
        for task in _leaf_tasks(tasks):
            if self.options.num_fewshot is not None:  # as simple_evaluate applies num_fewshot
                task.set_config(key="num_fewshot", value=self.options.num_fewshot)
            task.set_fewshot_seed(seed=1234)  # simple_evaluate's default fewshot_random_seed
        return tasks

    def _evaluate(self, answer: Any) -> dict[str, Any]:
        import random

        from lm_eval.evaluator import evaluate

        from suites.accuracy.bridge import BridgeLM

        random.seed(0)  # simple_evaluate's default random_seed
        np.random.seed(1234)  # simple_evaluate's default numpy_random_seed
        with _compiled_templates_reused(), _lm_eval_progress_bars_off():
            result = evaluate(BridgeLM(answer), self._task_dict(), limit=self.limit, log_samples=True,
                              bootstrap_iters=0, verbosity="ERROR")
        assert result is not None
        return result

    def plan(self) -> SuitePlan:
        from suites.accuracy.bridge import recording_answer

        result = self._evaluate(recording_answer(self.requests))
        digest = hashlib.sha256()
        for task in sorted(result["samples"]):
            digest.update(json.dumps(result["configs"][task], sort_keys=True, default=str).encode())
            for sample in sorted(result["samples"][task], key=lambda s: s["doc_id"]):
                digest.update(sample["doc_hash"].encode())
        self.data_sha256 = digest.hexdigest()
        self._configs = result["configs"]
        self._versions = result.get("versions", {})
        return SuitePlan(tuple(self.requests.values()), self.data_sha256)

    def score(self, responses: Responses) -> SuiteOutcome:
        import lm_eval

        per_metric: dict[str, dict[str, np.ndarray]] = {}
        better: dict[str, bool] = {}
        stats: dict[str, Any] = {}
        for subject in responses.subjects:
            result = self._evaluate(lambda request, s=subject: responses.get(s, request))
            for task, samples in result["samples"].items():
                filters = sorted({s["filter"] for s in samples})
                higher = result.get("higher_is_better", {}).get(task, {})
                for sample in samples:
                    for metric in sample["metrics"]:
                        key = f"{task}.{metric}" + (f".{sample['filter']}" if len(filters) > 1 else "")
                        per_metric.setdefault(key, {}).setdefault(subject, []).append(  # type: ignore[arg-type]
                            (sample["doc_id"], sample[metric]))
                        better[key] = bool(higher.get(metric, True))
                        stats[key] = _aggregation(result, task, metric)
        outcome = SuiteOutcome()
        for key, by_subject in per_metric.items():
            rows = {s: [v for _, v in sorted(pairs, key=lambda p: p[0])] for s, pairs in by_subject.items()}
            agg = stats[key]
            numeric = all(isinstance(v, int | float | np.floating | np.integer) for vals in rows.values() for v in vals)
            arrays = {s: np.asarray(v, dtype=float if numeric else object) for s, v in rows.items()}
            outcome.metrics[key] = Observations(arrays, higher_is_better=better[key],
                                                statistic=None if agg is None else (lambda r, f=agg: float(f(list(r)))))
        versions = ", ".join(f"{t} v{v}" for t, v in sorted(self._versions.items()))
        outcome.notes["*"] = [
            f"lm-eval {lm_eval.__version__}; tasks: {versions}; intervals: percentile bootstrap over documents "
            "(not lm-eval's stderr); prompts without a chat template, as lm-eval's default"
        ]
        return outcome


def _aggregation(result: dict[str, Any], task: str, metric: str) -> Any:
    """None for a mean (vectorised in the harness), else lm-eval's own aggregation function."""
    from lm_eval.api.registry import get_aggregation

    name = "mean"
    for entry in result["configs"].get(task, {}).get("metric_list", []) or []:
        if entry.get("metric") == metric and isinstance(entry.get("aggregation"), str):
            name = entry["aggregation"]
    return None if name == "mean" else get_aggregation(name)


@contextlib.contextmanager
def _compiled_templates_reused() -> Iterator[None]:
    """lm-eval compiles a task's Jinja templates again for every document and field (`lm_eval.utils.
    apply_template`); the suite evaluates once per subject, so this keeps each compiled template while an
    evaluation runs (4.9 -> 3.4 s on the demo's five subjects). Rendering is unchanged: templates are immutable."""
    from lm_eval import utils

    utils.env.from_string = functools.lru_cache(maxsize=4096)(utils.env.from_string)  # shadows the method
    try:
        yield
    finally:
        del utils.env.from_string


@contextlib.contextmanager
def _lm_eval_progress_bars_off() -> Iterator[None]:
    """lm-eval draws a progress bar per task while building requests, once per subject here, between our own
    progress display; `TQDM_DISABLE` is read when tqdm is imported, so the bar is switched off where it is made."""
    from lm_eval.api import task
    from tqdm import tqdm

    task.tqdm = functools.partial(tqdm, disable=True)
    try:
        yield
    finally:
        task.tqdm = tqdm


def _leaf_tasks(tasks: Mapping[Any, Any]) -> list[Any]:
    out = []
    for value in tasks.values():
        out += _leaf_tasks(value) if isinstance(value, Mapping) else [value]
    return out
