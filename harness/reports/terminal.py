"""The rich terminal table: one row per metric, one column per subject, the base first."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.reports.cells import delta_cell, rows, value_cell
from harness.scorecard import Scorecard

_COLOURS = {"better": "green", "worse": "red"}


def print_table(scorecard: Scorecard, console: Console | None = None) -> None:
    """Print the comparison; deltas are coloured only when significant."""
    console = console or Console()
    table = Table(title=f"ppeval run {scorecard.run.id}", show_lines=False)
    table.add_column("metric", style="bold")
    for subject in scorecard.subjects:
        table.add_column(subject.name + (" (ref)" if subject.kind == "base" else ""), overflow="fold")
    for suite, key in rows(scorecard):
        cells: list[Text | str] = [f"{suite}.{key}"]
        for subject in scorecard.subjects:
            metric = scorecard.metric(subject.name, f"{suite}.{key}")
            if metric is None:
                cells.append(Text("n/a", style="dim"))
                continue
            text = Text(value_cell(metric))
            delta, verdict = delta_cell(metric)
            if delta:
                text.append("\n" + delta, style=_COLOURS.get(verdict or "", "dim"))
            cells.append(text)
        table.add_row(*cells)
    console.print(table)
    for subject in scorecard.subjects:
        for suite, result in scorecard.results.get(subject.name, {}).items():
            for note in result.notes:
                console.print(f"[yellow]note[/] {subject.name} / {suite}: {note}", highlight=False, markup=True)
    if scorecard.gates:
        failed = [g for g in scorecard.gates if not g.passed]
        status = "[green]all gates passed[/]" if not failed else f"[red]{len(failed)} gate(s) failed[/]"
        console.print(status)
