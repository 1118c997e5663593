"""The benchmarks run end to end at CI size (a check that they work, not a timing: nothing is asserted on speed)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_runs_every_benchmark_end_to_end_in_tiny_mode_with_its_correctness_checks(tmp_path):
    results = tmp_path / "results.txt"
    # no wall-clock limit: the script's per-benchmark timeouts are lifted too, so a loaded CI machine is slow, not red
    no_limit = {name: "86400" for name in ("T_SCORING", "T_GENERATION", "T_MEMORY", "T_ACCURACY", "T_VLLM")}
    done = subprocess.run(["bash", "benchmarks/gpu.sh", "--tiny", str(results)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable, **no_limit})
    text = results.read_text(encoding="utf-8")
    assert done.returncode == 0, text[-3000:]
    assert "all benchmarks finished" in text
    assert "engine greedy vs HF generate one prompt at a time: 0 mismatches" in text
    assert "max |engine - raw| log-prob on batch 1, base / adapter0: 0.00e+00 / 0.00e+00" in text
    assert "equal to lm_eval's within 1e-06: yes" in text
    # the main environment has no vLLM: the vllm benchmark says so and passes (make test-vllm covers the backend)
    if importlib.util.find_spec("vllm") is None:
        assert "skipped: vLLM not installed (" in text
    else:
        assert "check: vllm greedy vs hf backend: 0 mismatches" in text
