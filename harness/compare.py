"""Comparing two scorecards (say, main's adapter and a PR's): per metric the change and its significance.

The runs are treated as independent estimates: the standard error of each side is read back from its
stored 95% interval (width / 2·1.96) and the change is significant when |z| > 1.96. Runs on different
suite data are not comparable and are refused unless forced. Subjects renamed between the runs are paired with
a mapping (`--map old=new`); each change knows whether its metric is a headline one (the suites' declarations),
and the gates of both runs are set side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from harness.errors import InputError
from harness.metrics import MetricSpec
from harness.scorecard import GateResult, MetricResult, Scorecard

Z_95 = 1.959964


@dataclass(frozen=True)
class Change:
    """One metric of one subject in both runs."""

    subject: str
    metric: str  # <suite>.<key>
    old: float | None
    new: float | None
    change: float | None
    significant: bool
    verdict: str  # "better", "worse", "same", "added", "removed"
    headline: bool = True  # a headline metric of its suite (else a breakdown)
    old_subject: str = ""  # the subject's name in the old run when `--map` renamed it


def _se(metric: MetricResult) -> float:
    if metric.ci_low is None or metric.ci_high is None:
        return math.nan
    return (metric.ci_high - metric.ci_low) / (2 * Z_95)


def _check_same_data(old: Scorecard, new: Scorecard, back: Mapping[str, str]) -> None:
    for subject, suites in new.results.items():
        for suite, result in suites.items():
            before = old.results.get(back.get(subject, subject), {}).get(suite)
            if before is not None and before.data_sha256 != result.data_sha256:
                raise InputError(
                    f"compare: suite {suite!r} ran on different data in the two runs (data_sha256 "
                    f"{before.data_sha256[:12]} vs {result.data_sha256[:12]}); pass --force to compare anyway"
                )



def parse_mapping(pairs: list[str] | None, old: Scorecard, new: Scorecard) -> dict[str, str]:
    """`--map old=new` arguments as {new name: old name}; names must exist in their runs."""
    back: dict[str, str] = {}
    old_names, new_names = {s.name for s in old.subjects}, {s.name for s in new.subjects}
    for pair in pairs or []:
        before, sep, after = pair.partition("=")
        if not sep or not before or not after:
            raise InputError(f"--map {pair!r}: expected OLD=NEW (a subject of the old run = its name in the new run)")
        if before not in old_names:
            raise InputError(f"--map {pair!r}: the old run has no subject {before!r} "
                             f"(it has {', '.join(sorted(old_names))})")
        if after not in new_names:
            raise InputError(f"--map {pair!r}: the new run has no subject {after!r} "
                             f"(it has {', '.join(sorted(new_names))})")
        back[after] = before
    return back


def _spec(metric: str) -> tuple[bool, MetricSpec | None]:
    """Whether `<suite>.<key>` is a headline, and its declaration (for two-sided directions)."""
    from harness.metrics import find_spec, is_headline
    from harness.registry import metric_specs

    suite, _, key = metric.partition(".")
    specs = metric_specs(suite)
    return is_headline(specs, key), find_spec(specs, key)


def compare_scorecards(old: Scorecard, new: Scorecard, *, force: bool = False,
                       mapping: Mapping[str, str] | None = None) -> list[Change]:
    """Every (subject, metric) in either run, with the change and whether it is significant. `mapping` pairs a
    new subject name with its old name ({new: old}, from `parse_mapping`)."""
    back = dict(mapping or {})
    if not force:
        _check_same_data(old, new, back)
    paired_old = set(back.values())
    changes: list[Change] = []
    subjects = [(s.name, back.get(s.name, s.name)) for s in new.subjects]
    subjects += [(s.name, s.name) for s in old.subjects if s.name not in new.results and s.name not in paired_old]
    declared: dict[str, tuple[bool, MetricSpec | None]] = {}
    for subject, before in subjects:
        keys = {f"{suite}.{k}" for run, name in ((old, before), (new, subject))
                for suite, r in run.results.get(name, {}).items() for k in r.metrics}
        renamed = before if before != subject else ""
        for key in sorted(keys):
            if key not in declared:
                declared[key] = _spec(key)
            headline, spec = declared[key]
            a, b = old.metric(before, key), new.metric(subject, key)
            if a is None or b is None:
                verdict = "added" if a is None else "removed"
                changes.append(Change(subject, key, a and a.value, b and b.value, None, False, verdict,
                                      headline, renamed))
                continue
            diff = b.value - a.value
            se = math.hypot(_se(a), _se(b))
            significant = diff != 0 and (se == 0 or (math.isfinite(se) and abs(diff) / se > Z_95))
            worse = spec.worse(diff, a.value, b.higher_is_better) if spec is not None else \
                (diff > 0) != b.higher_is_better  # two-sided metrics: away from their target is worse
            verdict = "same" if not significant else ("worse" if worse else "better")
            changes.append(Change(subject, key, a.value, b.value, diff, significant, verdict, headline, renamed))
    return changes


def select_changes(changes: list[Change], *, every: bool = False, changed: bool = False,
                   significant: bool = False) -> list[Change]:
    """Headline metrics unless `every`; only those that moved (`changed`) or moved significantly (`significant`)."""
    out = [c for c in changes if every or c.headline]
    if changed:
        out = [c for c in out if c.verdict in ("added", "removed") or (c.change is not None and c.change != 0)]
    if significant:
        out = [c for c in out if c.significant or c.verdict in ("added", "removed")]
    return out


def summary_line(changes: list[Change], shown: int) -> str:
    """One line: how many metrics were compared over how many subjects, and how many got better or worse."""
    count = {v: sum(1 for c in changes if c.verdict == v) for v in ("better", "worse", "same", "added", "removed")}
    subjects = len({c.subject for c in changes})
    extra = "".join(f", {count[v]} {v}" for v in ("added", "removed") if count[v])
    return (f"{len(changes)} metric(s) over {subjects} subject(s): {count['worse']} significantly worse, "
            f"{count['better']} significantly better, {count['same']} not significantly changed{extra}; "
            f"{shown} shown")


@dataclass(frozen=True)
class GateChange:
    """One gate bound for one subject in both runs: "pass", "FAIL", "warn" (failed at warn severity) or "–"."""

    subject: str
    metric: str
    rule: str
    old: str
    new: str


def _outcome(gate: GateResult | None) -> str:
    if gate is None:
        return "–"
    return "pass" if gate.passed else ("FAIL" if gate.severity == "error" else "warn")


def compare_gates(old: Scorecard, new: Scorecard, mapping: Mapping[str, str] | None = None) -> list[GateChange]:
    """The gates of both runs side by side, keyed by (subject, metric, rule); subjects paired by `mapping`."""
    forward = {v: k for k, v in (mapping or {}).items()}
    before = {(forward.get(g.subject, g.subject), g.metric, g.rule): g for g in old.gates}
    after = {(g.subject, g.metric, g.rule): g for g in new.gates}
    keys = list(after) + [k for k in before if k not in after]
    return [GateChange(*key, _outcome(before.get(key)), _outcome(after.get(key))) for key in keys]


def render_compare_markdown(old: Scorecard, new: Scorecard, changes: list[Change],
                            gates: list[GateChange] | None = None, summary: str = "") -> str:
    """The comparison as Markdown: the summary line, the changes (significant ones marked), the gates side by side."""
    from harness.reports.cells import fmt
    from harness.reports.md_escape import md_code, md_text

    marks = {"better": "✅ better", "worse": "⚠️ worse", "same": "", "added": "added", "removed": "removed"}
    lines = [f"# ppeval compare: {md_code(old.run.id)} → {md_code(new.run.id)}", ""]
    if summary:
        lines += [md_text(summary), ""]
    lines += ["| subject | metric | old | new | change | |", "|---|---|---|---|---|---|"]
    for c in changes:
        change = "" if c.change is None else f"{c.change:+.3g}{' *' if c.significant else ''}"
        subject = md_text(c.subject) + (f" (was {md_text(c.old_subject)})" if c.old_subject else "")
        lines.append(f"| {subject} | {md_code(c.metric)} | {fmt(c.old)} | {fmt(c.new)} | {change} | "
                     f"{marks[c.verdict]} |")
    lines += ["", "`*`: |change| exceeds 1.96 combined standard errors read from the stored 95% intervals."]
    if gates:
        lines += ["", "## Gates", "", "| subject | metric | rule | old | new |", "|---|---|---|---|---|"]
        lines += [f"| {md_text(g.subject)} | {md_code(g.metric)} | {g.rule} | {g.old} | {g.new} |"
                  for g in gates]
    return "\n".join(lines) + "\n"
