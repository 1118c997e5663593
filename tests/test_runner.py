"""The subject-major runner: run directory, cache reuse, resume after a crash, sanity alarms."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import ClassVar

import pytest

from harness.cli import main
from harness.config import load_config, parse_config
from harness.engine import Engine
from harness.runner import run_evaluation
from harness.scorecard import read_scorecard


def _config(tmp_path: Path, tiny, subjects: dict[str, Path], **suite_options):
    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu",
                  "max_batch_tokens": 256},
        "subjects": [{"name": n, "adapter": str(p)} for n, p in subjects.items()],
        "suites": {"perplexity": {"max_items": 24, **suite_options}},
        "run": {"cache_dir": str(tmp_path / "cache"), "bootstrap_resamples": 200},
    }
    return parse_config(raw, source="test", base_dir=tmp_path)


class CountingEngine(Engine):
    """An engine that counts scored requests and can crash after a number of batches."""

    instances: ClassVar[list[CountingEngine]] = []

    def __init__(self, *args, crash_after_batches: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_after = crash_after_batches
        self.batches = 0
        CountingEngine.instances.append(self)

    def score(self, requests, on_batch=None):
        def wrapped(indices, responses):
            if on_batch:
                on_batch(indices, responses)
            self.batches += 1
            if self.crash_after is not None and self.batches >= self.crash_after:
                raise KeyboardInterrupt  # what Ctrl-C mid-run looks like

        return super().score(requests, on_batch=wrapped)


def _factory(crash_after: int | None = None):
    def make(config):
        m = config.model
        return CountingEngine(m.base, dtype=m.dtype, device=m.device, prompt_format=m.prompt_format,
                              max_batch_tokens=m.max_batch_tokens, crash_after_batches=crash_after)

    return make


def test_run_writes_a_complete_run_directory(tmp_path, tiny):
    result = run_evaluation(_config(tmp_path, tiny, {"a": tiny.adapter}), out_dir=tmp_path / "run")
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"config.toml", "samples.jsonl", "scorecard.json", "scorecard.md", "report.html"} <= files
    card = read_scorecard(result.run_dir / "scorecard.json")
    raw = json.loads((result.run_dir / "scorecard.json").read_text())
    base_metric = raw["results"]["base"]["perplexity"]["metrics"]["mean_nll"]
    assert "delta_vs_base" not in base_metric
    metric = card.metric("a", "perplexity.mean_nll")
    assert metric is not None and metric.n == 24 and metric.ci_low <= metric.value <= metric.ci_high
    assert metric.delta_vs_base is not None
    assert [s.name for s in card.subjects] == ["base", "a"]
    assert len(card.subjects[0].sha256) == 64 and card.run.env["torch"]
    assert card.results["a"]["perplexity"].data_sha256 == card.results["base"]["perplexity"].data_sha256


def test_an_interrupted_run_resumes_computing_only_what_is_missing(tmp_path, tiny):
    config = _config(tmp_path, tiny, {"a": tiny.adapter})
    CountingEngine.instances.clear()
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(config, out_dir=tmp_path / "run", engine_factory=_factory(crash_after=2))
    first = CountingEngine.instances[-1].calls["score"]
    assert 0 < first < 24
    assert not (tmp_path / "run").exists()  # nothing half-written
    result = run_evaluation(config, out_dir=tmp_path / "run", engine_factory=_factory())
    second = CountingEngine.instances[-1].calls["score"]
    assert second == 48 - first  # base + a, 24 items each, minus what the first run committed
    assert result.stats.computed["base"] + result.stats.computed["a"] == second


def test_adding_an_adapter_reuses_every_base_result(tmp_path, tiny):
    run_evaluation(_config(tmp_path, tiny, {"a": tiny.adapter}), out_dir=tmp_path / "one", engine_factory=_factory())
    CountingEngine.instances.clear()
    config = _config(tmp_path, tiny, {"a": tiny.adapter, "full-copy": tiny.zero_adapter})
    result = run_evaluation(config, out_dir=tmp_path / "two", engine_factory=_factory())
    assert result.stats.computed == {"base": 0, "a": 0, "full-copy": 24}
    assert result.stats.activations == 1
    assert CountingEngine.instances[-1].calls == {"score": 24, "generate": 0, "activate": 1}


def test_fully_cached_run_never_loads_the_model(tmp_path, tiny):
    config = _config(tmp_path, tiny, {"a": tiny.adapter})
    first = run_evaluation(config, out_dir=tmp_path / "one")
    CountingEngine.instances.clear()
    second = run_evaluation(config, out_dir=tmp_path / "two", engine_factory=_factory())
    assert CountingEngine.instances == []
    assert first.scorecard.results == second.scorecard.results


def test_adapter_that_changes_nothing_is_flagged(tmp_path, tiny):
    result = run_evaluation(_config(tmp_path, tiny, {"a": tiny.adapter, "noop": tiny.zero_adapter}),
                            out_dir=tmp_path / "run")
    notes = result.scorecard.results["noop"]["perplexity"].notes
    assert any("identical to the base" in n for n in notes)
    assert not any("identical to the base" in n for n in result.scorecard.results["a"]["perplexity"].notes)
    delta = result.scorecard.metric("noop", "perplexity.mean_nll").delta_vs_base
    assert delta.value == 0 and not delta.significant


def test_rerunning_the_resolved_config_reproduces_the_values(tmp_path, tiny, capsys):
    result = run_evaluation(_config(tmp_path, tiny, {"a": tiny.adapter}), out_dir=tmp_path / "run")
    code = main(["run", str(result.run_dir / "config.toml"), "--out", str(tmp_path / "again")])
    assert code == 0
    again = read_scorecard(tmp_path / "again" / "scorecard.json")
    assert again.results == result.scorecard.results
    assert load_config(result.run_dir / "config.toml").sha256() == result.scorecard.run.config_sha256


def test_failed_gate_gives_exit_status_1(tmp_path, tiny, capsys):
    result = run_evaluation(_config(tmp_path, tiny, {"a": tiny.adapter}), out_dir=tmp_path / "run")
    policy = tmp_path / "policy.toml"
    policy.write_text('[[gate]]\nmetric = "perplexity.mean_nll"\nmax = 0.001\n')
    assert main(["gate", str(result.run_dir / "scorecard.json"), "--policy", str(policy)]) == 1
    policy.write_text('[[gate]]\nmetric = "perplexity.mean_nll"\nmax = 1000\n')
    assert main(["gate", str(result.run_dir / "scorecard.json"), "--policy", str(policy)]) == 0
    policy.write_text('[[gate]]\nmetric = "perplexity.mean_nl"\nmax = 1000\n')
    assert main(["gate", str(result.run_dir / "scorecard.json"), "--policy", str(policy)]) == 2
    assert 'did you mean "perplexity.mean_nll"' in capsys.readouterr().err


def test_a_full_run_makes_no_network_call(tmp_path, tiny, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    result = run_evaluation(_config(tmp_path, tiny, {"a": tiny.adapter}), out_dir=tmp_path / "run")
    assert result.scorecard.metric("a", "perplexity.mean_nll") is not None
