"""A run is one recorded value: a gate typo loads no model, a crashing suite keeps the others, --limit reproduces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from harness import registry
from harness.cli import main
from harness.scorecard import read_scorecard
from suites.perplexity import PerplexitySuite


class CrashingSuite(PerplexitySuite):
    """Plans like the perplexity suite, then fails while scoring."""

    name = "crashy"

    def score(self, responses: Any) -> Any:
        raise RuntimeError("boom while scoring")


def _write_config(tmp_path: Path, tiny: Any, *, suites: dict[str, Any], gates: list[dict[str, Any]] = ()) -> Path:
    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu",
                  "max_batch_tokens": 256},
        "subjects": [{"name": "a", "adapter": str(tiny.adapter)}],
        "suites": suites,
        "run": {"cache_dir": str(tmp_path / "cache"), "bootstrap_resamples": 200},
        "policy": {"gate": list(gates)},
    }
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def test_a_gate_typo_exits_2_before_any_suite_or_model_loads(tmp_path, tiny, monkeypatch, capsys):
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("suites were built (and a model would load) despite the gate typo")

    monkeypatch.setattr("harness.runner.build_suites", never)
    config = _write_config(tmp_path, tiny, suites={"perplexity": {"max_items": 8}},
                           gates=[{"metric": "perplexity.mean_nl", "max": 5.0}])
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    assert 'did you mean "perplexity.mean_nll"' in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_crashing_suite_keeps_the_others_results_and_exits_3(tmp_path, tiny, monkeypatch, capsys):
    monkeypatch.setitem(registry.BUILTIN_SUITES, "crashy", f"{__name__}:CrashingSuite")
    config = _write_config(tmp_path, tiny, suites={"perplexity": {"max_items": 8}, "crashy": {"max_items": 8}},
                           gates=[{"metric": "crashy.mean_nll", "max": 100.0}])
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 3
    assert "boom while scoring" in capsys.readouterr().out
    card = read_scorecard(tmp_path / "run" / "scorecard.json")
    assert card.metric("a", "perplexity.mean_nll") is not None  # the other suite's work is kept
    crashed = card.results["a"]["crashy"]
    assert crashed.metrics == {} and "boom while scoring" in (crashed.error or "")
    assert "boom while scoring" in crashed.missing["mean_nll"]
    gate = next(g for g in card.gates if g.metric == "crashy.mean_nll")
    assert not gate.passed and "boom while scoring" in gate.reason  # a gate on it fails with the reason


def test_a_limit_run_config_reproduces_it_from_the_cache(tmp_path, tiny, monkeypatch):
    config = _write_config(tmp_path, tiny, suites={"perplexity": {"max_items": 20}})
    assert main(["run", str(config), "--limit", "5", "--suites", "perplexity", "--out", str(tmp_path / "one")]) == 0
    first = read_scorecard(tmp_path / "one" / "scorecard.json")
    assert first.metric("a", "perplexity.mean_nll").n == 5
    assert first.options["limit"] == 5 and first.options["suites"] == ["perplexity"]
    recorded = (tmp_path / "one" / "config.toml").read_text(encoding="utf-8")
    assert "limit = 5" in recorded

    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was activated: the rerun should come from the cache")

    monkeypatch.setattr("harness.engine.Engine.activate", no_model)
    assert main(["run", str(tmp_path / "one" / "config.toml"), "--out", str(tmp_path / "two")]) == 0
    second = read_scorecard(tmp_path / "two" / "scorecard.json")
    assert second.results == first.results and second.run.config_sha256 == first.run.config_sha256


def test_progress_lines_outside_a_terminal_are_rate_bounded_and_end_each_subject():
    import io

    from rich.console import Console

    from harness.runner import ProgressLines

    out = io.StringIO()
    now = [0.0]
    lines = ProgressLines(Console(file=out, width=200), {"base": 100, "leaky": 10}, interval=10.0,
                          clock=lambda: now[0])
    for _ in range(50):  # 50 batches over 25 s of the fake clock
        now[0] += 0.5
        lines.advance("base", "score", 2)
    for _ in range(5):
        now[0] += 0.5
        lines.advance("leaky", "generate", 2)
    printed = out.getvalue().splitlines()
    assert len(printed) <= 5  # bounded: one line per 10 s plus each subject's last, not one per batch
    assert printed[-2].startswith("progress: base score 100/100 (100%)")
    assert printed[-1].startswith("progress: leaky generate 10/10 (100%)") and "ETA 0:00:00" in printed[-1]
