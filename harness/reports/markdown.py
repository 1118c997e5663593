"""scorecard.md: the comparison table, notes, gates and the compliance annex, fit for a CI job summary."""

from __future__ import annotations

from harness.reports.annex import render_annex_markdown
from harness.reports.cells import delta_cell, fmt, rows, value_cell
from harness.reports.md_escape import md_code, md_text
from harness.scorecard import Scorecard


def _escape(text: str) -> str:
    return md_text(text)  # the one helper for user- and model-controlled text (harness/reports/md_escape.py)


def render_markdown(scorecard: Scorecard) -> str:
    """Metrics × subjects with 95% CIs and deltas vs the base (* = significant)."""
    run = scorecard.run
    lines = [
        f"# ppeval scorecard — run `{run.id}`",
        "",
        f"Harness {run.harness_version} · seed {run.seed} · config sha256 `{run.config_sha256[:12]}` · "
        f"device {run.env.get('device', '?')}",
        "",
        "| metric | " + " | ".join(s.name + (" (ref)" if s.kind == "base" else "") for s in scorecard.subjects) + " |",
        "|---|" + "---|" * len(scorecard.subjects),
    ]
    for suite, key in rows(scorecard):
        cells = []
        for subject in scorecard.subjects:
            metric = scorecard.metric(subject.name, f"{suite}.{key}")
            if metric is None:
                cells.append("n/a")
                continue
            delta, verdict = delta_cell(metric)
            mark = {"better": " ✅", "worse": " ⚠️"}.get(verdict or "", "")
            cells.append(f"{value_cell(metric)} n={metric.n}" + (f"<br>{delta}{mark}" if delta else ""))
        lines.append(f"| {md_code(f'{suite}.{key}')} | " + " | ".join(cells) + " |")
    lines += ["", "Values are shown with 95% bootstrap intervals; Δ is the paired difference against the base, "
              "`*` where its interval excludes zero.", ""]
    notes = [
        f"- **{s.name} / {suite}**: {_escape(note)}"
        for s in scorecard.subjects
        for suite, result in scorecard.results.get(s.name, {}).items()
        for note in result.notes
    ]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    if scorecard.gates:
        lines += ["## Gates", "", "| subject | metric | rule | value | result |", "|---|---|---|---|---|"]
        for g in scorecard.gates:
            verdict = "pass" if g.passed else f"**FAIL**{' — ' + _escape(g.reason) if g.reason else ''}"
            lines.append(f"| {_escape(g.subject)} | {md_code(g.metric)} | {g.rule} | {fmt(g.value)} | {verdict} |")
        lines.append("")
    lines += ["## Subjects", "", "| name | kind | sha256 |", "|---|---|---|"]
    lines += [f"| {_escape(s.name)} | {s.kind} | `{s.sha256[:16]}` |" for s in scorecard.subjects]
    return "\n".join(lines) + "\n\n" + render_annex_markdown(scorecard, level=2)
