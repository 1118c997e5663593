"""Many adapters over many workers: subjects sharded across Ray tasks, one backend (one base load) per task.

Ray does the scheduling, placement (one GPU per worker where there are GPUs) and retries of a worker that
died; ppeval only splits the subject list and merges what comes back. Each task runs the same subject-major
loop as a single-process run, against the run's cache path: batches a task finished before it died are found
there by its retry (on a cluster, give `run.cache_dir` a path every node sees). Responses travel back through
Ray's object store, so the driver scores exactly what a single-process run would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.backends import Backend
    from harness.config import RunConfig
    from harness.requests import Request, Response
    from harness.runner import RunStats
    from harness.subjects import Subject

#: A shard's result: its subjects' responses, engine notes per subject, and its run statistics.
ShardResult = tuple[dict[str, dict[str, "Response"]], dict[str, list[str]], "RunStats"]


def shard_subjects(subjects: Sequence[Subject], workers: int) -> list[list[Subject]]:
    """Round-robin shards in config order (the base, listed first, lands on the first worker); no empty shard."""
    return [list(subjects[i::workers]) for i in range(min(workers, len(subjects)))]


def require_ray() -> Any:
    """The `ray` module, or an InputError saying what to install."""
    try:
        import ray
    except ImportError:
        raise InputError("running on several workers needs Ray: pip install 'ppeval[ray]' "
                         "(or run without --workers / [execution] mode = \"ray\")") from None
    return ray


def _answer_shard(config: RunConfig, subjects: Sequence[Subject], requests: Sequence[Request],
                  backend: Backend) -> ShardResult:
    """One worker's share: the single-process loop over `subjects`, with its own copy of the (unloaded) backend."""
    from rich.console import Console

    from harness.cache import ResultCache, default_cache_dir
    from harness.runner import RunStats, answer_all

    stats = RunStats()
    cache = ResultCache(config.run.cache_dir or default_cache_dir() / "results")
    try:
        responses, notes = answer_all(config, subjects, requests, cache, backend, Console(quiet=True), stats)
    finally:
        cache.close()
        backend.close()
    return responses, notes, stats


def answer_on_ray(
    config: RunConfig, subjects: Sequence[Subject], requests: Sequence[Request],
    backend: Backend, stats: RunStats, *, workers: int, address: str | None = None,
    max_retries: int = 3,
) -> tuple[dict[str, dict[str, Response]], dict[str, list[str]]]:
    """Answer every request for every subject on `workers` Ray tasks; merge their results in subject order."""
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # a local cluster gets a CPU per worker at least; `address` joins an existing cluster instead
        local = {} if address else {"num_cpus": max(workers, os.cpu_count() or 1)}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=max_retries)(_answer_shard)
        shared = ray.put(list(requests))
        shards = shard_subjects(subjects, workers)
        results: list[ShardResult] = ray.get([task.remote(config, shard, shared, backend) for shard in shards])
    finally:
        if started_here:
            ray.shutdown()
    responses: dict[str, dict[str, Response]] = {}
    notes: dict[str, list[str]] = {}
    for shard_responses, shard_notes, shard_stats in results:
        responses |= shard_responses
        notes |= shard_notes
        stats.computed |= shard_stats.computed
        stats.cached |= shard_stats.cached
        stats.activations += shard_stats.activations
    order = [s.name for s in subjects]
    return {n: responses[n] for n in order}, {n: notes[n] for n in order}
