"""The terminal report: the verdict first, then the headline metrics; `full=True` adds every metric.

Metric names are printed whole and wrapped, never cut; each distinct note is printed once with the
subjects it concerns (by default only alarms and failures, with a count of the rest).
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from harness.metrics import find_spec
from harness.reports.cells import delta_cell, fmt, rows, value_cell
from harness.reports.verdict import MARK_SYMBOL, SubjectVerdict, headline_keys, specs_by_suite, suite_order, verdict
from harness.scorecard import Scorecard

_COLOURS = {"better": "green", "worse": "red"}
_MARK_STYLE = {"fail": "bold red", "flag": "yellow", "ok": "green", "none": "dim"}
_IMPORTANT = ("ALARM", "FAILED", "WARNING", "False discovery rate")  # notes printed without --full


def _print_subject(row: SubjectVerdict, console: Console) -> None:
    head = Text.assemble((row.subject, "bold"), "  ", (MARK_SYMBOL[row.mark], _MARK_STYLE[row.mark]))
    console.print(head)
    ok = []
    for cell in row.cells:
        if cell.mark in ("ok", "none"):
            ok.append(cell.suite)
            continue
        line = Text.assemble((f"{cell.suite} ", "bold"), (MARK_SYMBOL[cell.mark], _MARK_STYLE[cell.mark]),
                             ": ", cell.text)
        console.print(Padding(line, (0, 0, 0, 2)))
    if ok:
        console.print(Padding(Text("no significant headline change: " + ", ".join(ok), style="dim"), (0, 0, 0, 2)))
    failed = [g for g in row.gates if not g.passed]
    if row.gates:
        names = "; ".join(f"{g.metric} {g.rule}{' (warn)' if g.severity == 'warn' else ''}" for g in failed)
        text = f"gates: {len(row.gates) - len(failed)} passed, {len(failed)} failed" + (f": {names}" if names else "")
        console.print(Padding(Text(text, style="red" if any(g.severity == "error" for g in failed) else "dim"),
                              (0, 0, 0, 2)))


def print_verdict(scorecard: Scorecard, console: Console) -> None:
    """One block per fine-tuned subject: its worst mark, each suite's finding, its gates by name."""
    console.print(Text("Verdict", style="bold underline"),
                  Text("(✗ fail: gate failed · ⚠ flag: headline worse, FDR-significant · ✓ ok)",
                       style="dim"))
    for row in verdict(scorecard):
        _print_subject(row, console)


def _metric_table(scorecard: Scorecard, title: str, headline_only: bool) -> Table:
    """Metrics × subjects: the base's value, then each subject's delta (with intervals when not compact)."""
    compact = headline_only
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True,
                  title_justify="left")
    table.add_column("suite / metric", overflow="fold")  # keys whole, folded where they do not fit
    for subject in scorecard.subjects:
        label = subject.name + (" (ref)" if subject.kind == "base" else "")
        table.add_column(label, overflow="fold", max_width=9 if compact else None)  # "+0.0104 *" fits
    specs = specs_by_suite(scorecard)
    by_suite: dict[str, list[str]] = {}
    for suite, key in rows(scorecard):
        by_suite.setdefault(suite, []).append(key)
    for suite in suite_order(scorecard):
        keys = by_suite.get(suite, [])
        if headline_only:
            keys = headline_keys(suite, keys)[0]
        if keys:  # a suite heading, then its keys: `<suite>.<key>` is the name a gate uses
            table.add_row(Text(suite, style="bold"), *[""] * len(scorecard.subjects))
        for key in keys:
            spec = find_spec(specs.get(suite, ()), key)
            cells: list[Text | str] = [Text(" ." + key)]
            for subject in scorecard.subjects:
                metric = scorecard.metric(subject.name, f"{suite}.{key}")
                if metric is None:
                    cells.append(Text("n/a", style="dim"))
                    continue
                delta, verdict_ = delta_cell(metric, spec)
                if subject.kind == "base" or not delta:
                    cells.append(Text(fmt(metric.value) if compact else value_cell(metric)))
                elif compact:
                    cells.append(Text(delta.removeprefix("Δ "), style=_COLOURS.get(verdict_ or "", "")))
                else:
                    text = Text(value_cell(metric))
                    text.append("\n" + delta, style=_COLOURS.get(verdict_ or "", "dim"))
                    cells.append(text)
            table.add_row(*cells)
    return table


def print_notes(scorecard: Scorecard, console: Console, full: bool) -> None:
    """Each distinct note once, with the subjects it concerns; without `full`, only alarms and failures."""
    seen: dict[str, dict[str, None]] = {}
    for note in scorecard.notes:
        seen.setdefault(note, {})
    for subject in scorecard.subjects:
        for suite, result in scorecard.results.get(subject.name, {}).items():
            for note in result.notes:
                seen.setdefault(f"{suite}: {note}", {})[subject.name] = None
    everyone = len(scorecard.subjects)
    shown = [(n, who) for n, who in seen.items() if full or any(k in n for k in _IMPORTANT)]
    for note, who in shown:
        whom = "" if not who else " [all]" if len(who) == everyone else f" [{', '.join(who)}]"
        console.print(Text.assemble(("note ", "yellow"), note, (whom, "dim")))
    if len(shown) < len(seen):
        console.print(Text(f"{len(seen) - len(shown)} more note(s) in scorecard.md (`--full` prints them)",
                           style="dim"))


def print_table(scorecard: Scorecard, console: Console | None = None, full: bool = False) -> None:
    """The verdict, the headline metrics (every metric with `full`), the notes and the gate summary."""
    console = console or Console()
    print_verdict(scorecard, console)
    title = "All metrics (value [95% CI], Δ vs base)" if full else "Headline metrics (Δ vs base; * FDR-significant)"
    console.print(_metric_table(scorecard, title, headline_only=not full))
    print_notes(scorecard, console, full)
    if scorecard.gates:
        failed = [g for g in scorecard.gates if not g.passed and g.severity == "error"]
        status = "[green]all gates passed[/]" if not failed else (
            f"[red]{len(failed)} gate(s) failed:[/] " + "; ".join(f"{g.subject} {g.metric} {g.rule}" for g in failed))
        console.print(status, highlight=False)
