"""The benchmarks run end to end at CI size (a check that they work, not a timing: nothing is asserted on speed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_runs_every_benchmark_end_to_end_in_tiny_mode_with_its_correctness_checks(tmp_path):
    results = tmp_path / "results.txt"
    done = subprocess.run(["bash", "benchmarks/gpu.sh", "--tiny", str(results)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHON": sys.executable})
    text = results.read_text(encoding="utf-8")
    assert done.returncode == 0, text[-3000:]
    assert "all benchmarks finished" in text
    assert "engine greedy vs HF generate one prompt at a time: 0 mismatches" in text
    assert "max |engine - raw| log-prob on batch 1, base / adapter0: 0.00e+00 / 0.00e+00" in text
    assert "equal to lm_eval's within 1e-06: yes" in text
