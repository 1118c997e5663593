"""The backend seam (issue 17): the runner reads only the `Backend` protocol; a fully cached run imports no torch;
capabilities make metrics missing with the reason; `[execution] backend` still reads; the `server` backend against
a local OpenAI-compatible test server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends import Backend, Capabilities
from harness.config import parse_config
from harness.errors import InputError
from harness.runner import run_evaluation
from harness.testing import FakeBackend

REPO = Path(__file__).parents[1]


def _records(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def _config(tmp_path: Path, tiny, suites: dict, **extra):
    words = ["refund", "order", "lamp", "password", "account", "tomorrow", "invoice", "parcel"]
    members = [f"member {i}: please {words[i % 8]} the {words[(i * 3) % 8]} number {i * 7}" for i in range(40)]
    holdout = [f"holdout {i}: kindly {words[(i + 2) % 8]} my {words[(i * 5) % 8]} code {i * 11}" for i in range(40)]
    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": [{"name": "a", "adapter": str(tiny.adapter)}],
        "data": {"training": str(_records(tmp_path / "train.jsonl", members)),
                 "holdout": str(_records(tmp_path / "holdout.jsonl", holdout))},
        "suites": suites,
        "run": {"cache_dir": str(tmp_path / "cache"), "bootstrap_resamples": 100},
        **extra,
    }
    return parse_config(raw, source="test", base_dir=tmp_path)


def test_the_hf_and_fake_backends_implement_the_protocol(tiny, tmp_path):
    from harness.backends import make_backend

    config = _config(tmp_path, tiny, {"perplexity": {"max_items": 4}})
    assert isinstance(make_backend(config), Backend)
    assert isinstance(FakeBackend(), Backend)


def test_the_runner_asks_the_backend_only_for_what_the_cache_lacks(tiny, tmp_path):
    config = _config(tmp_path, tiny, {"perplexity": {"max_items": 12}})
    fake = FakeBackend(shifts={"a": 1.0})
    first = run_evaluation(config, out_dir=tmp_path / "one", backend=fake)
    assert fake.served == {"base": 12, "a": 12}
    again = FakeBackend(shifts={"a": 1.0})
    second = run_evaluation(config, out_dir=tmp_path / "two", backend=again)
    assert again.served == {} and second.stats.cached == {"base": 12, "a": 12}
    assert first.scorecard.results == second.scorecard.results
    assert first.scorecard.run.engine["backend"] == "fake"  # provenance: RunInfo.engine is filled
    assert first.scorecard.metric("a", "perplexity.mean_nll").delta_vs_base.value > 0


def test_requests_cut_to_the_context_are_counted_in_the_notes(tiny, tmp_path):
    config = _config(tmp_path, tiny, {"perplexity": {"max_items": 12}})
    result = run_evaluation(config, out_dir=tmp_path / "run", backend=FakeBackend(max_length=4))
    notes = result.scorecard.results["a"]["perplexity"].notes
    assert any("12 of 12 request(s) were longer than the model's context (4 tokens" in n for n in notes), notes


def test_min_k_pp_is_missing_with_the_reason_when_the_backend_has_no_vocabulary_statistics(tiny, tmp_path):
    config = _config(tmp_path, tiny, {"memorization": {"max_members": 20}})
    blind = FakeBackend(shifts={"a": 0.5}, capabilities=Capabilities(vocab_stats=False))
    result = run_evaluation(config, out_dir=tmp_path / "run", backend=blind)
    suite = result.scorecard.results["a"]["memorization"]
    assert "mia.min_k_pp.auc" not in suite.metrics
    assert "vocabulary statistics" in suite.missing["mia.min_k_pp.auc"]
    assert "mia.loss.auc" in suite.metrics and "mia_auc" in suite.metrics
    assert "no: " in result.scorecard.run.engine["capability.vocab_stats"]


def test_a_backend_without_prompt_log_probs_refuses_scoring_suites_before_any_work(tiny, tmp_path):
    config = _config(tmp_path, tiny, {"perplexity": {"max_items": 4}})
    fake = FakeBackend(capabilities=Capabilities(prompt_logprobs=False, reasons={"prompt_logprobs": "no echo"}))
    with pytest.raises(InputError, match=r"perplexity score continuations.*no echo"):
        run_evaluation(config, out_dir=tmp_path / "run", backend=fake)
    assert fake.served == {} and not (tmp_path / "run").exists()


def test_the_old_execution_backend_key_still_reads_with_a_deprecation_message(tiny, tmp_path):
    with pytest.warns(FutureWarning, match="write `mode` instead"):
        config = _config(tmp_path, tiny, {}, execution={"backend": "local", "workers": 1})
    assert config.execution.mode == "local"
    with pytest.raises(InputError, match="give `mode` only"):
        _config(tmp_path, tiny, {}, execution={"backend": "local", "mode": "ray"})
    plain = _config(tmp_path, tiny, {})
    assert plain.sha256() == _config(tmp_path, tiny, {}, backend={"kind": "hf"}).sha256()  # default left out


_CACHED_RUN = """
import sys
from harness.cli import main
code = main(["run", sys.argv[1], "--out", sys.argv[2]])
print("torch imported:", "torch" in sys.modules, "exit:", code)
"""


def test_a_fully_cached_run_does_not_import_torch(tiny, tmp_path):
    """The runner keys the cache through the backend's settings (no model load, no torch): a rerun whose every
    response is cached never imports torch (checked in a fresh interpreter)."""
    from harness.cli import main

    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nbase = "{tiny.base}"\nprompt_format = "plain"\ndevice = "cpu"\ndtype = "float32"\n'
                      f'[[subjects]]\nname = "a"\nadapter = "{tiny.adapter}"\n[suites.perplexity]\nmax_items = 6\n'
                      f'[run]\ncache_dir = "{tmp_path / "cache"}"\nbootstrap_resamples = 100\n')
    assert main(["run", str(config), "--out", str(tmp_path / "first")]) == 0
    out = subprocess.run([sys.executable, "-c", _CACHED_RUN, str(config), str(tmp_path / "second")],
                         capture_output=True, text=True, cwd=REPO, check=True)
    assert "torch imported: False exit: 0" in out.stdout, out.stdout + out.stderr[-2000:]
    first = json.loads((tmp_path / "first" / "scorecard.json").read_text())
    second = json.loads((tmp_path / "second" / "scorecard.json").read_text())
    assert first["results"] == second["results"]
    assert second["run"]["engine"]["backend"] == "hf" and second["run"]["env"]["torch"]
