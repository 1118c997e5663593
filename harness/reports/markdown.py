"""scorecard.md: the verdict, gates, headline metrics (breakdowns collapsed), notes and the compliance annex."""

from __future__ import annotations

from harness.metrics import find_spec
from harness.reports.annex import render_annex_markdown
from harness.reports.cells import delta_cell, fmt, rows, value_cell
from harness.reports.md_escape import md_code, md_text
from harness.reports.verdict import MARK_SYMBOL, headline_keys, specs_by_suite, suite_order, verdict
from harness.scorecard import Scorecard


def _escape(text: str) -> str:
    return md_text(text)  # the one helper for user- and model-controlled text (harness/reports/md_escape.py)


def _verdict_lines(scorecard: Scorecard) -> list[str]:
    """The first screen: one row per subject, one cell per suite (mark and headline finding)."""
    suites = suite_order(scorecard)
    lines = ["## Verdict", "",
             "✗ fail: a gate failed · ⚠ flag: a headline metric significantly worse after the false-discovery "
             "control · ✓ ok: no significant headline change", "",
             "| subject | " + " | ".join(suites) + " | gates |", "|---|" + "---|" * (len(suites) + 1)]
    for row in verdict(scorecard):
        cells = [f"{MARK_SYMBOL[c.mark]}{': ' + _escape(c.text) if c.mark in ('fail', 'flag') else ''}"
                 for c in row.cells]
        failed = [g for g in row.gates if not g.passed]
        gates = "–" if not row.gates else f"{len(row.gates) - len(failed)} passed" + (
            f", **{len(failed)} failed**: " + "; ".join(f"{md_code(g.metric)} {g.rule}" for g in failed)
            if failed else "")
        lines.append(f"| **{_escape(row.subject)}** | " + " | ".join(cells) + f" | {gates} |")
    return [*lines, ""]


def _table(scorecard: Scorecard, keys: list[tuple[str, str]]) -> list[str]:
    lines = ["| metric | " + " | ".join(s.name + (" (ref)" if s.kind == "base" else "") for s in scorecard.subjects)
             + " |", "|---|" + "---|" * len(scorecard.subjects)]
    specs = specs_by_suite(scorecard)
    for suite, key in keys:
        spec = find_spec(specs.get(suite, ()), key)
        cells = []
        for subject in scorecard.subjects:
            metric = scorecard.metric(subject.name, f"{suite}.{key}")
            if metric is None:
                cells.append("n/a")
                continue
            delta, verdict_ = delta_cell(metric, spec)
            mark = {"better": " ✅", "worse": " ⚠️"}.get(verdict_ or "", "")
            cells.append(f"{value_cell(metric)} n={metric.n}" + (f"<br>{delta}{mark}" if delta else ""))
        lines.append(f"| {md_code(f'{suite}.{key}')} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(scorecard: Scorecard) -> str:
    """The verdict, then headline metrics × subjects with 95% CIs and deltas vs the base (* = significant after
    the false-discovery control), breakdowns collapsed, notes once, gates, subjects and the annex."""
    run = scorecard.run
    lines = [
        f"# ppeval scorecard — run `{run.id}`",
        "",
        f"Harness {run.harness_version} · seed {run.seed} · config sha256 `{run.config_sha256[:12]}` · "
        f"device {run.env.get('device', '?')}",
        "",
        *_verdict_lines(scorecard),
    ]
    if scorecard.gates:
        lines += ["## Gates", "", "| subject | metric | rule | value | 95% CI | severity | result |",
                  "|---|---|---|---|---|---|---|"]
        for g in scorecard.gates:
            verdict_ = "pass" if g.passed else f"**FAIL**{' — ' + _escape(g.reason) if g.reason else ''}"
            ci = f"[{fmt(g.ci_low)}, {fmt(g.ci_high)}]" if g.ci_low is not None else "–"
            lines.append(f"| {_escape(g.subject)} | {md_code(g.metric)} | {g.rule} | {fmt(g.value)} | {ci} | "
                         f"{g.severity} | {verdict_} |")
        lines.append("")
    head, breakdown = [], []
    for suite, key in rows(scorecard):
        (head if headline_keys(suite, [key])[0] else breakdown).append((suite, key))
    lines += ["## Headline metrics", "", *_table(scorecard, head), "",
              "Values are shown with 95% bootstrap intervals; Δ is the paired difference against the base, "
              "`*` where it is significant after the false-discovery control (q ≤ 0.05, families in the notes).", ""]
    if breakdown:
        lines += ["<details><summary>Breakdown metrics (" + str(len(breakdown)) + ")</summary>", "",
                  *_table(scorecard, breakdown), "", "</details>", ""]
    notes: dict[str, dict[str, None]] = {note: {} for note in scorecard.notes}
    for s in scorecard.subjects:
        for suite, result in scorecard.results.get(s.name, {}).items():
            for note in result.notes:
                notes.setdefault(f"**{suite}**: {_escape(note)}", {})[s.name] = None
    if notes:
        everyone = len(scorecard.subjects)
        lines += ["## Notes", ""]
        lines += [f"- {note}" + ("" if not who or len(who) == everyone else f" ({', '.join(who)})")
                  for note, who in notes.items()]
        lines.append("")
    lines += ["## Subjects", "", "| name | kind | sha256 |", "|---|---|---|"]
    lines += [f"| {_escape(s.name)} | {s.kind} | `{s.sha256[:16]}` |" for s in scorecard.subjects]
    return "\n".join(lines) + "\n\n" + render_annex_markdown(scorecard, level=2)
