"""The CI gate box: `pip install ppeval` (the core, no extras) runs gate, compare, report and verify on a stored
run directory, without torch or any suite's library installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_governance import SAMPLES, make_scorecard

from harness.runner import _write_run_dir

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "scipy", "sklearn", "presidio_analyzer", "fairlearn", "lm_eval", "faker")


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
                             capture_output=True, text=True)
    if install.returncode != 0:
        pytest.fail(f"pip install of the core failed:\n{install.stderr[-3000:]}")
    return venv


def _ppeval(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "ppeval"), *args], capture_output=True, text=True)


def test_the_core_install_gates_compares_reports_and_verifies_without_torch(core_venv: Path, tmp_path: Path) -> None:
    installed = subprocess.run(
        [str(core_venv / "bin" / "python"), "-c",
         f"import importlib.util as u; print([m for m in {HEAVY!r} if u.find_spec(m)])"],
        capture_output=True, text=True, check=True)
    assert installed.stdout.strip() == "[]"  # none of the heavy libraries came with the core
    run = tmp_path / "run"
    _write_run_dir(run, make_scorecard(), SAMPLES, '[model]\nbase = "models/base"\n')
    (tmp_path / "policy.toml").write_text(
        '[[gate]]\nmetric = "pii_leakage.pii_leak_rate"\nmax_delta_vs_base = 0.01\n')
    gate = _ppeval(core_venv, "gate", str(run / "scorecard.json"), "--policy", str(tmp_path / "policy.toml"),
                   "--junit", str(tmp_path / "junit.xml"), "--attest", str(tmp_path / "statement.json"))
    assert gate.returncode == 1, gate.stderr  # the planted leaky subject fails its gate
    assert (tmp_path / "junit.xml").is_file() and (tmp_path / "statement.json").is_file()
    compare = _ppeval(core_venv, "compare", str(run / "scorecard.json"), str(run / "scorecard.json"))
    assert compare.returncode == 0, compare.stderr
    report = _ppeval(core_venv, "report", str(run / "scorecard.json"), "--format", "md,html",
                     "--out", str(tmp_path / "rendered"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rendered" / "report.html").is_file()
    verify = _ppeval(core_venv, "verify", str(run), "--attestation", str(tmp_path / "statement.json"))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_run_without_the_hf_extra_exits_2_naming_it(core_venv: Path, tmp_path: Path, tiny) -> None:
    (tmp_path / "run.toml").write_text(f'[model]\nbase = "{tiny.base}"\ndevice = "cpu"\n[suites.perplexity]\n')
    result = _ppeval(core_venv, "run", str(tmp_path / "run.toml"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "ppeval[" in result.stderr and "not installed" in result.stderr
