"""The tidy export of a scorecard (`ppeval report --format csv,json`): one row per subject × metric.

Columns: run_id, subject, suite, metric, value, ci_low, ci_high, n, higher_is_better, delta, delta_ci_low,
delta_ci_high, significant, p_value, q_value, missing. Floats are written at full precision (Python's
shortest round-tripping repr), so `pandas.read_csv("metrics.csv")` gives back the scorecard's numbers exactly.
A metric a suite could not compute for a subject is a row with an empty value and its reason in `missing`.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from harness.scorecard import Scorecard

COLUMNS = ("run_id", "subject", "suite", "metric", "value", "ci_low", "ci_high", "n", "higher_is_better", "delta",
           "delta_ci_low", "delta_ci_high", "significant", "p_value", "q_value", "missing")
CSV_FILE, JSON_FILE = "metrics.csv", "metrics.json"


def tidy_rows(scorecard: Scorecard) -> list[dict[str, Any]]:
    """Every (subject, suite, metric) of the scorecard as a flat record, subjects in scorecard order."""
    rows: list[dict[str, Any]] = []
    for subject in scorecard.subjects:
        for suite, result in scorecard.results.get(subject.name, {}).items():
            for key, m in sorted(result.metrics.items()):
                d = m.delta_vs_base
                rows.append({
                    "run_id": scorecard.run.id, "subject": subject.name, "suite": suite, "metric": key,
                    "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n,
                    "higher_is_better": m.higher_is_better, "delta": d.value if d else None,
                    "delta_ci_low": d.ci_low if d else None, "delta_ci_high": d.ci_high if d else None,
                    "significant": d.significant if d else None, "p_value": getattr(d, "p_value", None),
                    "q_value": getattr(d, "q_value", None), "missing": None,
                })
            for key, why in sorted(result.missing.items()):
                if key not in result.metrics:
                    rows.append({**dict.fromkeys(COLUMNS), "run_id": scorecard.run.id, "subject": subject.name,
                                 "suite": suite, "metric": key, "missing": why})
    return rows


def render_csv(scorecard: Scorecard) -> str:
    """The rows as CSV with a header line; an absent value is an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in tidy_rows(scorecard):
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def render_json(scorecard: Scorecard) -> str:
    """The rows as a JSON array of objects (`pandas.read_json(path)` or `json.load`); absent values are null."""
    return json.dumps(tidy_rows(scorecard), indent=1, ensure_ascii=False) + "\n"
