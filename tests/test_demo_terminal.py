"""The demo's terminal output is readable: the verdict and headline metrics, under 80 lines at 80 columns."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_the_demo_prints_under_80_lines_at_80_columns_with_whole_metric_names(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["demo", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if not line.startswith("demo:")]
    (tmp_path / "terminal.txt").write_text(captured.out, encoding="utf-8")
    assert len(lines) < 80, captured.out
    assert max(len(line) for line in lines) <= 80 and "…" not in captured.out
    assert lines[0].startswith("Verdict") and "leaky" in captured.out and "overpersonal" in captured.out
