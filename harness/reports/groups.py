"""Strategy comparison: per tag value (e.g. strategy = lora-r16 / full-ft), each metric's mean over the
subjects carrying it, its spread, and the difference between groups."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from harness.errors import InputError
from harness.reports.cells import fmt, rows
from harness.reports.md_escape import md_code, md_text
from harness.scorecard import Scorecard


@dataclass(frozen=True)
class GroupStat:
    mean: float
    spread: float  # sample standard deviation over the group's subjects (0 for one subject)
    n: int


@dataclass(frozen=True)
class GroupRow:
    metric: str
    groups: dict[str, GroupStat]
    difference: float | None  # between the two group means, or max − min over more groups


def group_rows(scorecard: Scorecard, tag: str) -> list[GroupRow]:
    """One row per metric: the groups of non-base subjects by the value of `tag`."""
    members: dict[str, list[str]] = {}
    for subject in scorecard.subjects:
        if subject.kind != "base" and tag in subject.tags:
            members.setdefault(subject.tags[tag], []).append(subject.name)
    if not members:
        known = sorted({t for s in scorecard.subjects for t in s.tags})
        raise InputError(f"--group-by {tag!r}: no subject has this tag (tags present: {', '.join(known) or 'none'})")
    out = []
    for suite, key in rows(scorecard):
        metric = f"{suite}.{key}"
        groups = {}
        for value, names in sorted(members.items()):
            values = [m.value for n in names if (m := scorecard.metric(n, metric)) is not None]
            if values:
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                groups[value] = GroupStat(statistics.fmean(values), spread, len(values))
        means = [g.mean for g in groups.values()]
        difference = None
        if len(means) == 2:
            difference = means[1] - means[0]
        elif len(means) > 2:
            difference = max(means) - min(means)
        out.append(GroupRow(metric, groups, difference))
    return out


def render_groups_markdown(scorecard: Scorecard, tag: str) -> str:
    """The group-by table in Markdown: mean ± spread (n) per group, and the difference."""
    table = group_rows(scorecard, tag)
    values = sorted({v for row in table for v in row.groups})
    header = "difference" if len(values) != 2 else f"{md_text(values[1])} − {md_text(values[0])}"
    lines = [f"# Metrics by {md_code(tag)}", "", "| metric | " + " | ".join(md_text(v) for v in values)
             + f" | {header} |",
             "|---|" + "---|" * (len(values) + 1)]
    for row in table:
        cells = [f"{fmt(g.mean)} ± {fmt(g.spread)} (n={g.n})" if (g := row.groups.get(v)) else "–" for v in values]
        lines.append(f"| {md_code(row.metric)} | " + " | ".join(cells) + f" | {fmt(row.difference)} |")
    lines += ["", "Mean over the subjects with each tag value, ± their standard deviation; the base is excluded."]
    return "\n".join(lines) + "\n"
