"""`ppeval report --format csv,json`: one row per subject x metric that round-trips to the scorecard's numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from harness.cli import main
from harness.scorecard import DeltaResult, MetricResult, RunInfo, Scorecard, SubjectInfo, SuiteResult


def _card() -> Scorecard:
    def metric(value: float, delta: float | None) -> MetricResult:
        d = None if delta is None else DeltaResult(value=delta, ci_low=delta - 0.013, ci_high=delta + 0.0171,
                                                   significant=True, p_value=0.001, q_value=0.0123456789)
        return MetricResult(value=value, ci_low=value - 0.1 / 3, ci_high=value + 0.2 / 7, n=137,
                            higher_is_better=False, delta_vs_base=d)

    results = {}
    for name, value in (("base", 0.1), ("a", 1 / 3)):
        delta = None if name == "base" else value - 0.1
        results[name] = {"memorization": SuiteResult(
            suite_version="1", data_sha256="d" * 64,
            metrics={"mia_auc": metric(value, delta), "mia.loss.auc": metric(value / 2, delta)},
            missing={"mia_tpr_at_0.1pct_fpr": "only 200 non-members"})}
    return Scorecard(
        run=RunInfo(id="r1", started_at="2026-11-28T00:00:00", finished_at="2026-11-28T00:01:00",
                    harness_version="0", config_sha256="c" * 64, seed=0, env={"device": "cpu"}),
        subjects=[SubjectInfo(name="base", kind="base", path="/x", sha256="s" * 64),
                  SubjectInfo(name="a", kind="adapter", path="/y", sha256="t" * 64)],
        results=results)


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def test_csv_and_json_exports_round_trip_to_the_scorecards_numbers(tmp_path: Path) -> None:
    card = _card()
    card.write(tmp_path / "scorecard.json")
    out = tmp_path / "export"
    assert main(["report", str(tmp_path / "scorecard.json"), "--format", "csv,json", "--out", str(out)]) == 0
    with (out / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = json.loads((out / "metrics.json").read_text())
    assert len(rows) == len(records) == 2 * 3  # two subjects x (two metrics + one missing)
    for row, record in zip(rows, records, strict=True):
        assert row["subject"] == record["subject"] and row["metric"] == record["metric"]
        metric = card.metric(row["subject"], f"{row['suite']}.{row['metric']}")
        if metric is None:
            assert row["value"] == "" and record["value"] is None and row["missing"] == "only 200 non-members"
            continue
        for got in (row, record):
            read = (lambda k, got=got: _number(got[k])) if got is row else (lambda k, got=got: got[k])
            assert read("value") == metric.value and read("ci_low") == metric.ci_low
            assert read("ci_high") == metric.ci_high and int(read("n")) == metric.n
            d = metric.delta_vs_base
            if d is None:
                assert read("delta") is None and read("q_value") is None
            else:
                assert (read("delta"), read("delta_ci_low"), read("delta_ci_high")) == (d.value, d.ci_low, d.ci_high)
                assert read("q_value") == d.q_value and read("p_value") == d.p_value
        assert row["significant"] in ("", "True") and record["significant"] in (None, True)


def test_an_unknown_export_format_is_refused(tmp_path: Path, capsys) -> None:
    _card().write(tmp_path / "scorecard.json")
    assert main(["report", str(tmp_path / "scorecard.json"), "--format", "xlsx"]) == 2
    assert "csv, json" in capsys.readouterr().err
