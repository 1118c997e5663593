"""Ray scale-out on the demo: the whole run (every suite, base + 4 adapters) in one process vs on Ray workers.

Prints each wall time as a ratio of the single-process run measured in the same process, and checks that
every scorecard equals the single-process one (apart from run id and timing). The demo fixtures are built
first if missing (not timed); each run gets a fresh result cache, so everything is computed.

    python benchmarks/workers.py                  # 1 process, Ray 1 worker, Ray 2 workers
    python benchmarks/workers.py --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.demo.config import demo_config
from harness.runner import run_evaluation


def _timed_run(config: RunConfig, backend: str, workers: int) -> tuple[float, dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="ppeval-bench-workers-"))
    config = config.model_copy(update={
        "run": config.run.model_copy(update={"cache_dir": tmp / "cache"}),
        "execution": config.execution.model_copy(update={"mode": backend}),
    })
    started = time.perf_counter()
    result = run_evaluation(config, out_dir=tmp / "run", workers=workers)
    seconds = time.perf_counter() - started
    card = json.loads((result.run_dir / "scorecard.json").read_text(encoding="utf-8"))
    for key in ("id", "started_at", "finished_at"):
        card["run"].pop(key)
    return seconds, card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to time")
    args = parser.parse_args()
    config = demo_config()
    baseline, reference = _timed_run(config, "local", 1)
    print(f"{'single process':<16} {baseline:7.1f} s  = 1.00")
    for workers in args.workers:
        seconds, card = _timed_run(config, "ray", workers)
        same = "same scorecard" if card == reference else "SCORECARD DIFFERS"
        print(f"{f'Ray, {workers} worker(s)':<16} {seconds:7.1f} s  = {seconds / baseline:.2f} of it  ({same})")


if __name__ == "__main__":
    main()
