"""The accuracy suite: lm-eval's numbers through the engine, cache isolation, offline refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cache import ResultCache
from harness.cli import main
from harness.config import parse_config
from harness.runner import run_evaluation
from suites.accuracy import SHIPPED_TASKS, TASK_DIR

LIMIT = 40


def _config(tmp_path: Path, tiny, suites: dict) -> object:
    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "device": "cpu", "dtype": "float32"},
        "subjects": [{"name": "a", "adapter": str(tiny.adapter)}],
        "suites": suites,
        "run": {"cache_dir": str(tmp_path / "cache"), "bootstrap_resamples": 200},
    }
    return parse_config(raw, source="test", base_dir=tmp_path)


def _lm_eval_directly(tiny, peft: Path | None) -> dict[str, float]:
    import lm_eval
    import yaml

    configs = []
    for name in SHIPPED_TASKS:
        config = yaml.safe_load((TASK_DIR / f"{name}.yaml").read_text())
        config["dataset_kwargs"]["data_files"]["test"] = str(TASK_DIR / "support_names.jsonl")
        configs.append(config)
    model_args = {"pretrained": str(tiny.base), "dtype": "float32", "device": "cpu", "add_bos_token": True}
    if peft is not None:
        model_args["peft"] = str(peft)
    out = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=configs, limit=LIMIT, batch_size=4,
                                  bootstrap_iters=0)
    values = {}
    for task, metrics in out["results"].items():
        for key, value in metrics.items():
            metric, _, _ = key.partition(",")
            if isinstance(value, float) and not metric.endswith("_stderr"):
                values[f"{task}.{metric}"] = value
    return values


def test_metrics_equal_lm_eval_run_directly_on_base_and_adapter(tmp_path, tiny):
    card = run_evaluation(_config(tmp_path, tiny, {"accuracy": {"limit": LIMIT}}), out_dir=tmp_path / "run").scorecard
    for subject, peft in (("base", None), ("a", tiny.adapter)):
        expected = _lm_eval_directly(tiny, peft)
        ours = {k: m.value for k, m in card.results[subject]["accuracy"].metrics.items()}
        assert set(ours) == set(expected)
        for key, value in expected.items():
            assert ours[key] == pytest.approx(value, abs=1e-6), (subject, key)
        assert all(m.n == LIMIT for m in card.results[subject]["accuracy"].metrics.values())


def test_same_request_for_two_subjects_is_cached_separately(tmp_path, tiny):
    config = _config(tmp_path, tiny, {"accuracy": {"limit": 5, "tasks": ["support_name_mc"]}})
    result = run_evaluation(config, out_dir=tmp_path / "run")
    from harness.engine import engine_settings
    from harness.runner import build_suites

    suite = build_suites(config, None, None)[0]
    requests = suite.plan().requests
    settings = engine_settings(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    cache = ResultCache(tmp_path / "cache")
    shas = {s.name: s.sha256 for s in result.scorecard.subjects}
    base = cache.get_many(shas["base"], settings.key, [r.key for r in requests])
    adapted = cache.get_many(shas["a"], settings.key, [r.key for r in requests])
    assert set(base) == set(adapted) == {r.key for r in requests}
    assert all(base[k] != adapted[k] for k in base)


def _user_task(tmp_path: Path, data_file: str, metric: str = "acc") -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mytask.yaml").write_text(f"""
task: mytask
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
metric_list:
  - metric: {metric}
""")
    return tasks


def _run_cli(tmp_path: Path, tiny, include: Path, capsys) -> tuple[int, str]:
    config = tmp_path / "run.toml"
    config.write_text(f"""
[model]
base = "{tiny.base}"
prompt_format = "plain"
[suites.accuracy]
tasks = ["mytask"]
include_path = "{include}"
limit = 3
[run]
cache_dir = "{tmp_path / 'cache'}"
""")
    code = main(["run", str(config), "--out", str(tmp_path / "out")])
    return code, capsys.readouterr().err


def test_user_task_with_relative_data_file_runs(tmp_path, tiny, capsys):
    include = _user_task(tmp_path, "data.jsonl")
    (include / "data.jsonl").write_text((TASK_DIR / "support_names.jsonl").read_text())
    code, err = _run_cli(tmp_path, tiny, include, capsys)
    assert code == 0, err


def test_missing_task_data_exits_2_saying_what_to_download(tmp_path, tiny, capsys):
    code, err = _run_cli(tmp_path, tiny, _user_task(tmp_path, "/nonexistent/data.jsonl"), capsys)
    assert code == 2
    assert "mytask" in err and "not on disk" in err and "never downloads" in err
    assert not (tmp_path / "out").exists()


def test_metric_from_the_hub_is_refused(tmp_path, tiny, capsys):
    code, err = _run_cli(tmp_path, tiny, _user_task(tmp_path, "x.jsonl", metric="rouge"), capsys)
    assert code == 2 and "'rouge'" in err and "offline" in err


_GUARDED_RUN = '''
import json, socket, sys
attempts = []
_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo
LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", None}

def getaddrinfo(host, *args, **kwargs):
    if host not in LOCAL:
        attempts.append(f"getaddrinfo {host}")
        raise OSError("network blocked by the test")
    return _getaddrinfo(host, *args, **kwargs)

def connect(self, address):
    if isinstance(address, tuple) and address[0] not in LOCAL:
        attempts.append(f"connect {address}")
        raise OSError("network blocked by the test")
    return _connect(self, address)

socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
socket.socket.connect_ex = lambda self, address: connect(self, address) or 0
from harness.config import parse_config
from harness.runner import run_evaluation
raw = json.loads(sys.argv[1])
config = parse_config(raw, source="test", base_dir=__import__("pathlib").Path(sys.argv[2]))
result = run_evaluation(config, out_dir=__import__("pathlib").Path(sys.argv[2]) / "out", suites=["accuracy"])
assert result.scorecard.results["a"]["accuracy"].metrics, "no accuracy metrics"
print("ATTEMPTS " + json.dumps(attempts))
'''


def test_the_accuracy_suite_runs_with_sockets_blocked_and_attempts_no_remote_host(tmp_path, tiny):
    import json
    import os
    import subprocess
    import sys

    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "device": "cpu", "dtype": "float32"},
        "subjects": [{"name": "a", "adapter": str(tiny.adapter)}],
        "suites": {"accuracy": {"limit": 4}},
        "run": {"cache_dir": str(tmp_path / "cache"), "bootstrap_resamples": 100},
    }
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_OFFLINE", "TELEMETRY"))}  # the caller's flags
    done = subprocess.run([sys.executable, "-c", _GUARDED_RUN, json.dumps(raw), str(tmp_path)], env=env,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("ATTEMPTS "))
    assert json.loads(line.removeprefix("ATTEMPTS ")) == []
