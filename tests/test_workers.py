"""Many adapters over Ray workers: the same scorecard as one process, retries of a killed worker, a clear
error without Ray."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import parse_config
from harness.runner import _default_engine, run_evaluation
from harness.workers import shard_subjects

TESTS = str(Path(__file__).parent)


def _config(tmp_path: Path, tiny, cache: str = "cache"):
    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": [{"name": "a", "adapter": str(tiny.adapter)}, {"name": "zero", "adapter": str(tiny.zero_adapter)},
                     {"name": "full", "model": str(tiny.full)}],
        "suites": {"perplexity": {"max_items": 16}},
        "run": {"cache_dir": str(tmp_path / cache), "bootstrap_resamples": 200},
    }
    return parse_config(raw, source="test", base_dir=tmp_path)


def _comparable(card_path: Path) -> dict:
    """The scorecard without what differs between any two runs: the run id, its timing and the worker count."""
    card = json.loads(card_path.read_text())
    for key in ("id", "started_at", "finished_at"):
        card["run"].pop(key)
    card.get("options", {}).pop("workers", None)
    return card


def test_subjects_are_sharded_round_robin_with_the_base_on_the_first_worker():
    assert shard_subjects(["base", "a", "b", "c", "d"], 2) == [["base", "b", "d"], ["a", "c"]]
    assert shard_subjects(["base", "a"], 4) == [["base"], ["a"]]


def test_workers_without_ray_exit_2_saying_what_to_install(tmp_path, tiny, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nbase = "{tiny.base}"\nprompt_format = "plain"\ndevice = "cpu"\n'
                      f'[[subjects]]\nname = "a"\nadapter = "{tiny.adapter}"\n[suites.perplexity]\nmax_items = 4\n')
    assert main(["run", str(config), "--workers", "2", "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'ppeval[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray cluster of 2 CPUs whose workers can import this test module (for the crashing engine)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([TESTS, *sys.path])}})
    yield ray
    ray.shutdown()


def test_two_ray_workers_write_the_scorecard_of_a_single_process_run(tmp_path, tiny, ray_local):
    single = run_evaluation(_config(tmp_path, tiny, "cache-1"), out_dir=tmp_path / "single")
    sharded = run_evaluation(_config(tmp_path, tiny, "cache-2"), out_dir=tmp_path / "sharded", workers=2)
    assert sharded.stats.computed == single.stats.computed  # everything computed once, in the workers
    assert sharded.stats.activations == single.stats.activations == 4
    assert _comparable(sharded.run_dir / "scorecard.json") == _comparable(single.run_dir / "scorecard.json")


@dataclass(frozen=True)
class DieOnce:
    """An engine factory whose engine kills its worker process after the first committed batch of `subject`
    (only once: a marker file remembers it), as an out-of-memory kill or a lost node would."""

    marker: str
    subject: str

    def __call__(self, config):
        engine = _default_engine(config)
        score = engine.score

        def dying_score(requests, on_batch=None):
            def wrapped(indices, responses):
                on_batch(indices, responses)
                if engine.active.name == self.subject and not os.path.exists(self.marker):
                    Path(self.marker).write_text(str(os.getpid()))
                    os._exit(1)

            return score(requests, on_batch=wrapped)

        engine.score = dying_score
        return engine


def test_a_killed_worker_is_retried_by_ray_and_resumes_from_the_cache(tmp_path, tiny, ray_local):
    def small_batches(cache: str):  # several batches per subject, so that the kill falls mid-subject
        config = _config(tmp_path, tiny, cache)
        return config.model_copy(update={"model": config.model.model_copy(update={"max_batch_tokens": 64})})

    reference = run_evaluation(small_batches("cache-ref"), out_dir=tmp_path / "reference")
    config = small_batches("cache")
    marker = tmp_path / "killed"
    result = run_evaluation(config, out_dir=tmp_path / "retried", workers=2,
                            engine_factory=DieOnce(str(marker), "a"))
    assert marker.exists(), "the worker was never killed"
    assert int(marker.read_text()) != os.getpid()  # it was a worker process, not the driver
    assert result.stats.cached["a"] > 0  # the retry found the batches committed before the kill
    assert _comparable(result.run_dir / "scorecard.json") == _comparable(reference.run_dir / "scorecard.json")
