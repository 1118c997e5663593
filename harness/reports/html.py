"""report.html: one self-contained file (inline CSS and SVG, no script, no network) rendered from a scorecard.

Every string from the scorecard or the samples reaches the page through Jinja2's autoescaping or, inside the
SVG charts built here, through `markupsafe.escape`; a Content-Security-Policy forbids scripts on top of that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jinja2
from markupsafe import Markup, escape

from harness.metrics import MetricSpec, find_spec
from harness.registry import metric_specs
from harness.reports.annex import annex_sections, mapping_version
from harness.reports.cells import delta_cell, fmt, rows, value_cell
from harness.reports.verdict import MARK_SYMBOL, headline_keys, suite_order, verdict
from harness.scorecard import MetricResult, Scorecard, SubjectInfo, SuiteResult

#: Okabe–Ito colours (colour-blind safe); the base is grey, the other subjects cycle through the rest.
_BASE_COLOUR = "#8a8a8a"
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442")
_VERDICT_COLOUR = {"better": "#1a7f37", "worse": "#cf222e"}
#: ranks "worst" examples when a suite declares no `rank_samples_by` field (descending)
_FALLBACK_RANK_KEYS = ("score",)
_MAX_EXAMPLES = 15
_MAX_CELL_CHARS = 1500
#: a dot separates key parts unless it sits between two digits (`mia_tpr_at_0.1pct_fpr` is one part)
_KEY_SEPARATOR = re.compile(r"(?<!\d)\.|\.(?!\d)")
_Fid = tuple[int, tuple[str, ...]]  # a candidate family: the varying position and the parts with `*` there


# ---------------------------------------------------------------------------------------------- metric families
@dataclass(frozen=True)
class MetricFamily:
    """Keys of one suite that differ in exactly one part, e.g. `canary_exposure_bits.rep_1 … rep_16`."""

    pattern: str  # the keys with the varying part as `*`
    members: tuple[tuple[str, str], ...]  # (metric key, its varying part)


def split_key(key: str) -> list[str]:
    """The dot-separated parts of a metric key, keeping decimal numbers whole."""
    return _KEY_SEPARATOR.split(key)


def _anchored(parts: Sequence[str], i: int, keys: set[str]) -> bool:
    """Whether the fixed parts around position `i` start or end with a metric of their own (an aggregate)."""
    heads = (".".join(parts[:j]) for j in range(1, i + 1))
    tails = (".".join(parts[j:]) for j in range(i + 1, len(parts)))
    return any(k in keys for k in (*heads, *tails))


def metric_families(keys: Iterable[str]) -> list[MetricFamily]:
    """Families of at least two keys, each key in at most one, in the order the keys come.

    A key `a.b.c` is a candidate member of `*.b.c`, `a.*.c` and `a.b.*`. It joins the candidate whose fixed
    parts are themselves a metric (`canary_exposure_bits.*` beside `canary_exposure_bits`), else the largest
    (`mia.*.auc`: AUC by attack), else the one varying the earliest part (`*.acc`: accuracy by task).
    """
    ordered = list(dict.fromkeys(keys))
    keyset = set(ordered)
    candidates: dict[_Fid, list[str]] = {}
    anchored: dict[_Fid, bool] = {}
    for key in ordered:
        parts = split_key(key)
        for i in range(len(parts) if len(parts) > 1 else 0):
            fid = (i, (*parts[:i], "*", *parts[i + 1:]))
            candidates.setdefault(fid, []).append(key)
            anchored[fid] = _anchored(parts, i, keyset)
    alive = {fid for fid, members in candidates.items() if len(members) >= 2}
    choice: dict[str, _Fid] = {}
    while True:
        choice = _assign(ordered, alive, candidates, anchored)
        counts: dict[_Fid, int] = {}
        for fid in choice.values():
            counts[fid] = counts.get(fid, 0) + 1
        dead = {fid for fid in alive if counts.get(fid, 0) < 2}
        if not dead:
            break
        alive -= dead
    families: dict[_Fid, list[str]] = {}
    for key in ordered:
        if key in choice:
            families.setdefault(choice[key], []).append(key)
    return [
        MetricFamily(".".join(pattern), tuple((k, split_key(k)[i]) for k in members))
        for (i, pattern), members in families.items()
    ]


def _assign(
    keys: Sequence[str], alive: set[_Fid], candidates: Mapping[_Fid, Sequence[str]], anchored: Mapping[_Fid, bool],
) -> dict[str, _Fid]:
    """Each key's preferred live family: anchored first, then the largest, then the earliest varying part."""

    def score(fid: _Fid) -> tuple[bool, int, int]:
        return anchored[fid], len(candidates[fid]), -fid[0]

    best: dict[str, _Fid] = {}
    for fid in sorted(alive):
        for key in candidates[fid]:
            if key not in best or score(fid) > score(best[key]):
                best[key] = fid
    return {k: best[k] for k in keys if k in best}


# ---------------------------------------------------------------------------------------------- SVG helpers
def _e(text: object) -> str:
    """Escape any text for an SVG element or attribute."""
    return str(escape(str(text)))


def _colour(index: int, subject: SubjectInfo) -> str:
    """The subject's colour: grey for the base, the palette for the others."""
    if subject.kind == "base":
        return _BASE_COLOUR
    return _PALETTE[index % len(_PALETTE)]


def _colours(subjects: Sequence[SubjectInfo]) -> dict[str, str]:
    """Subject name -> colour, stable across every chart of the report."""
    others = [s for s in subjects if s.kind != "base"]
    return {s.name: _colour(others.index(s) if s in others else 0, s) for s in subjects}


def _ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    raw = (hi - lo) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return [start + i * step for i in range(round((end - start) / step) + 1)]


def _finite(x: float | None) -> bool:
    """Whether `x` is a number that can be drawn."""
    return x is not None and math.isfinite(x)


def _svg(width: float, height: float, label: str, body: list[str]) -> Markup:
    """Wrap drawn elements into a sized, labelled inline SVG."""
    head = (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_e(label)}">')
    return Markup(head + "".join(body) + "</svg>")


# ---------------------------------------------------------------------------------------------- bar charts
@dataclass
class _Bar:
    """One drawn bar: which member group, which subject, and its metric."""

    group: int
    slot: int
    subject: str
    key: str
    metric: MetricResult


def _metric(scorecard: Scorecard, subject: str, suite: str, key: str) -> MetricResult | None:
    """A metric of one subject and suite, or None."""
    result = scorecard.results.get(subject, {}).get(suite)
    return result.metrics.get(key) if result else None


def _bars(scorecard: Scorecard, suite: str, family: MetricFamily) -> list[_Bar]:
    """The drawable bars of a family: every subject × member with a finite value."""
    bars = []
    for group, (key, _) in enumerate(family.members):
        for slot, subject in enumerate(scorecard.subjects):
            metric = _metric(scorecard, subject.name, suite, key)
            if metric is not None and _finite(metric.value):
                bars.append(_Bar(group, slot, subject.name, key, metric))
    return bars


def _bar_range(bars: Sequence[_Bar]) -> list[float]:
    """Y ticks spanning zero, every value and every finite interval end."""
    values = [0.0]
    for bar in bars:
        m = bar.metric
        values += [v for v in (m.value, m.ci_low, m.ci_high) if _finite(v)]  # type: ignore[misc]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    headroom = 0.08 * (hi - lo)  # room for the significance stars
    return _ticks(lo - headroom if lo < 0 else lo, hi + headroom if hi > 0 else hi)


def _bar_tooltip(bar: _Bar) -> str:
    """Hover text of a bar: subject, key, value with interval, n and delta."""
    delta, _ = delta_cell(bar.metric)
    return f"{bar.subject} · {bar.key}: {value_cell(bar.metric)} n={bar.metric.n}" + (f" · {delta}" if delta else "")


def bar_chart(scorecard: Scorecard, suite: str, family: MetricFamily) -> Markup:
    """Grouped bars (one group per member, one bar per subject) with 95% CI whiskers; * marks significant deltas."""
    bars = _bars(scorecard, suite, family)
    colours = _colours(scorecard.subjects)
    n_slots, bar_w = len(scorecard.subjects), 12
    labels = [label if len(label) <= 28 else label[:27] + "…" for _, label in family.members]
    group_w = max(n_slots * bar_w + 16, 250 / len(labels))  # small families spread over a minimal width
    gap = group_w - n_slots * bar_w
    longest = max(len(label) for label in labels)
    rotate = longest * 6.5 > group_w
    left, top, plot_h = max(56, round(5 * longest - group_w / 2) + 6) if rotate else 56, 22, 170
    bottom = round(22 + 4.3 * longest) if rotate else 30
    width = left + 12 + group_w * len(labels)
    height = top + plot_h + bottom
    ticks = _bar_range(bars)
    lo, hi = ticks[0], ticks[-1]

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * plot_h

    body = [f'<text class="title" x="{left}" y="14">{_e(family.pattern)}</text>']
    for t in ticks:
        body.append(f'<line class="grid" x1="{left}" x2="{width - 8}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                    f'<text class="tick" x="{left - 6}" y="{y(t) + 3.5:.1f}" text-anchor="end">{t:.4g}</text>')
    body.append(f'<line class="axis" x1="{left}" x2="{width - 8}" y1="{y(0):.1f}" y2="{y(0):.1f}"/>')
    for bar in bars:
        body.append(_bar_svg(bar, left + bar.group * group_w + gap / 2 + bar.slot * bar_w, bar_w, y,
                             colours[bar.subject]))
    for group, ((key, _), label) in enumerate(zip(family.members, labels, strict=True)):
        cx, ly = left + group * group_w + group_w / 2, top + plot_h + 14
        anchor = f'text-anchor="end" transform="rotate(-40 {cx:.1f} {ly:.1f})"' if rotate else 'text-anchor="middle"'
        body.append(f'<text class="label" x="{cx:.1f}" y="{ly:.1f}" {anchor}><title>{_e(key)}</title>'
                    f"{_e(label)}</text>")
    return _svg(width, height, f"{suite}: {family.pattern}", body)


def _bar_svg(bar: _Bar, x: float, w: float, y: Callable[[float], float], colour: str) -> str:
    """One bar with its whisker and, for a significant delta, an outlined bar and a star."""
    m = bar.metric
    top, base = sorted((y(m.value), y(0)))
    _, verdict = delta_cell(m)
    outline = f' stroke="{_VERDICT_COLOUR[verdict]}" stroke-width="2"' if verdict else ""
    parts = [f'<rect class="bar" x="{x + 1:.1f}" y="{top:.1f}" width="{w - 2:.1f}" height="{max(base - top, 1):.1f}" '
             f'fill="{colour}"{outline}><title>{_e(_bar_tooltip(bar))}</title></rect>']
    cx = x + w / 2
    peak = top
    if _finite(m.ci_low) and _finite(m.ci_high):
        y1, y2 = y(m.ci_low), y(m.ci_high)
        peak = min(peak, y2)
        parts.append(f'<path class="whisker" d="M{cx:.1f} {y1:.1f}V{y2:.1f}M{cx - 3:.1f} {y1:.1f}h6'
                     f'M{cx - 3:.1f} {y2:.1f}h6"/>')
    if verdict:
        parts.append(f'<text class="star" x="{cx:.1f}" y="{peak - 3:.1f}" text-anchor="middle" '
                     f'fill="{_VERDICT_COLOUR[verdict]}">*</text>')
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- ROC curves
def _roc_curves(scorecard: Scorecard, suite: str) -> dict[str, list[tuple[str, list[float], list[float]]]]:
    """attack -> [(subject, fpr, tpr)] from `details.roc`, skipping anything malformed."""
    curves: dict[str, list[tuple[str, list[float], list[float]]]] = {}
    for subject in scorecard.subjects:
        result = scorecard.results.get(subject.name, {}).get(suite)
        roc = result.details.get("roc") if result else None
        if not isinstance(roc, dict):
            continue
        for attack, points in roc.items():
            if not isinstance(points, dict):
                continue
            fpr, tpr = points.get("fpr"), points.get("tpr")
            if _numbers(fpr) and _numbers(tpr) and len(fpr) == len(tpr) >= 2:
                curves.setdefault(str(attack), []).append((subject.name, fpr, tpr))
    return curves


def _numbers(values: object) -> bool:
    """Whether `values` is a list of finite numbers."""
    return isinstance(values, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _roc_floor(curves: Sequence[tuple[str, list[float], list[float]]]) -> float:
    """The smallest decade on the log FPR axis: the smallest positive FPR, within 1e-4 … 1e-2."""
    positive = [f for _, fpr, _ in curves for f in fpr if f > 0]
    if not positive:
        return 1e-3
    return min(1e-2, max(1e-4, 10 ** math.floor(math.log10(min(positive)) + 1e-9)))


def _densify(fpr: Sequence[float], tpr: Sequence[float], floor: float) -> list[tuple[float, float]]:
    """ROC points with the straight segments between them sampled along the log axis, where they bend."""
    out = [(fpr[0], tpr[0])]
    for f0, t0, f1, t1 in zip(fpr, tpr, fpr[1:], tpr[1:], strict=False):
        start = max(f0, floor)
        steps = min(40, int(8 * math.log10(f1 / start))) if f1 > start else 0
        for k in range(1, steps):
            f = start * (f1 / start) ** (k / steps)
            out.append((f, t0 + (t1 - t0) * (f - f0) / (f1 - f0)))
        out.append((f1, t1))
    return out


def roc_chart(scorecard: Scorecard, attack: str, curves: Sequence[tuple[str, list[float], list[float]]]) -> Markup:
    """ROC curves of one attack on a log FPR axis, one line per subject, with the chance diagonal."""
    colours = _colours(scorecard.subjects)
    left, top, pw, ph = 50, 22, 300, 230
    width, height = left + pw + 24, top + ph + 42
    floor = _roc_floor(curves)
    decades = round(-math.log10(floor))

    def x(f: float) -> float:
        return left + (math.log10(max(f, floor)) - math.log10(floor)) / decades * pw

    def y(t: float) -> float:
        return top + (1 - t) * ph

    body = [f'<text class="title" x="{left}" y="14">{_e(attack)}</text>']
    for d in range(decades + 1):
        f = floor * 10**d
        body.append(f'<line class="grid" x1="{x(f):.1f}" x2="{x(f):.1f}" y1="{top}" y2="{top + ph}"/>'
                    f'<text class="tick" x="{x(f):.1f}" y="{top + ph + 14}" text-anchor="middle">{f * 100:g}%</text>')
    for t in (0, 0.25, 0.5, 0.75, 1):
        body.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                    f'<text class="tick" x="{left - 6}" y="{y(t) + 3.5:.1f}" text-anchor="end">{t:g}</text>')
    body.append(f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/>')
    diagonal = [floor * 10 ** (decades * i / 40) for i in range(41)]
    body.append('<polyline class="chance" points="' + " ".join(f"{x(f):.1f},{y(f):.1f}" for f in diagonal)
                + '"><title>chance (TPR = FPR)</title></polyline>')
    for subject, fpr, tpr in curves:
        points = " ".join(f"{x(f):.1f},{y(t):.1f}" for f, t in _densify(fpr, tpr, floor))
        body.append(f'<polyline class="curve" points="{points}" stroke="{colours.get(subject, "#000")}">'
                    f"<title>{_e(subject)}</title></polyline>")
    body.append(f'<text class="axis-title" x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">'
                "false positive rate (log scale)</text>"
                f'<text class="axis-title" transform="rotate(-90 12 {top + ph / 2})" x="12" y="{top + ph / 2}" '
                'text-anchor="middle">true positive rate</text>')
    return _svg(width, height, f"ROC curves, attack {attack}", body)


# ---------------------------------------------------------------------------------------------- tables
@dataclass
class _Cell:
    """One subject's cell of a metric row: value with CI, n, and the delta with its verdict."""

    value: str
    n: int
    delta: str = ""
    verdict: str | None = None


@dataclass
class _Row:
    """A metric row: the key, whether higher is better, and one cell (or None) per subject."""

    suite: str
    key: str
    higher_is_better: bool | None
    cells: list[_Cell | None]
    target: float | None = None  # two-sided metrics: the value that is best
    meaning: str = ""


def _cell(metric: MetricResult | None, spec: MetricSpec | None = None) -> _Cell | None:
    """Format one metric like the terminal and Markdown reports."""
    if metric is None:
        return None
    delta, verdict = delta_cell(metric, spec)
    return _Cell(value_cell(metric), metric.n, delta, verdict)


def _row(scorecard: Scorecard, suite: str, key: str) -> _Row:
    """A metric row across every subject; direction and verdicts from the metric's declaration."""
    spec = find_spec(metric_specs(suite), key)
    metrics = [_metric(scorecard, s.name, suite, key) for s in scorecard.subjects]
    hib = spec.higher_is_better if spec else next((m.higher_is_better for m in metrics if m is not None), None)
    return _Row(suite, key, hib, [_cell(m, spec) for m in metrics], spec.target if spec else None,
                spec.meaning if spec else "")


def _suite_names(scorecard: Scorecard) -> list[str]:
    """Suites in run order, then any others found in the results."""
    names = dict.fromkeys(scorecard.run.suites)
    for subject in scorecard.subjects:
        names.update(dict.fromkeys(scorecard.results.get(subject.name, {})))
    return list(names)


def _by_subjects(scorecard: Scorecard, suite: str, items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Deduplicate (subject, text) pairs into (text, which subjects) in first-seen order."""
    seen: dict[str, dict[str, None]] = {}
    for subject, text in items:
        seen.setdefault(text, {})[subject] = None
    everyone = [s.name for s in scorecard.subjects if suite in scorecard.results.get(s.name, {})]
    return [(text, "all subjects" if list(who) == everyone and len(who) > 1 else ", ".join(who))
            for text, who in seen.items()]


def _suite_results(scorecard: Scorecard, suite: str) -> list[tuple[str, SuiteResult]]:
    """(subject, result) for the subjects that ran this suite."""
    return [(s.name, r) for s in scorecard.subjects if (r := scorecard.results.get(s.name, {}).get(suite))]


# ---------------------------------------------------------------------------------------------- worst examples
@dataclass
class _ExampleTable:
    """The worst examples of one suite and sample kind."""

    kind: str
    columns: list[str]
    rows: list[list[str]]
    total: int
    ranked_by: str | None


def _plain(value: object) -> str:
    """Any JSON value as readable text, never raw JSON: numbers to 3 significant digits, mappings as `k: v`."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "–"
    if isinstance(value, float):
        return fmt(value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        sep = " | " if any(isinstance(v, (dict, list)) for v in value) else ", "
        return sep.join(_plain(v) for v in value)
    return str(value)


def _show(value: object) -> str:
    """A sample field as plain text (escaped later by the template), long values cut."""
    text = _plain(value)
    return text if len(text) <= _MAX_CELL_CHARS else text[:_MAX_CELL_CHARS] + " …"


def _rank_value(value: object) -> float | None:
    """A sample field as a ranking number: a finite number (a bool counts 0/1), or a list's length."""
    if isinstance(value, list):
        return float(len(value))
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _rank_key(group: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> str | None:
    """The first ranking field (the suite's declared ones, then a fallback) every sample of the group has."""
    for key in (*candidates, *_FALLBACK_RANK_KEYS):
        if all(_rank_value(s.get(key)) is not None for s in group):
            return key
    return None


def _example_tables(samples: Sequence[Mapping[str, Any]], suite: str, rank_keys: Sequence[str] = (),
                    focus: Sequence[str] = ()) -> list[_ExampleTable]:
    """Per sample kind of a suite, the worst rows first (by the suite's declared ranking field), capped; `focus`
    (the subjects the verdict marked for this suite) keeps their samples when they have any."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for sample in samples:
        if sample.get("suite") == suite:
            groups.setdefault(str(sample.get("kind", "samples")), []).append(sample)
    tables = []
    for kind, group in groups.items():
        mine = [s for s in group if s.get("subject") in focus]
        if mine:
            group = mine
        ranked_by = _rank_key(group, rank_keys)
        if ranked_by:
            group = sorted(group, key=lambda s: -(_rank_value(s[ranked_by]) or 0.0))
        chosen = group[:_MAX_EXAMPLES]
        columns = list(dict.fromkeys(k for s in chosen for k in s if k not in ("suite", "kind")))
        if "subject" in columns:
            columns.remove("subject")
            columns.insert(0, "subject")
        table_rows = [[_show(s[c]) if c in s else "" for c in columns] for s in chosen]
        tables.append(_ExampleTable(kind, columns, table_rows, len(group), ranked_by))
    return tables


# ---------------------------------------------------------------------------------------------- the page
@dataclass
class _SuiteView:
    """Everything the template shows for one suite."""

    name: str
    anchor: str
    versions: str
    data_sha256: str
    rows: list[_Row]
    notes: list[tuple[str, str]]
    missing: list[tuple[str, str]]
    breakdown_rows: list[_Row] = field(default_factory=list)
    roc: list[Markup] = field(default_factory=list)
    roc_title: str = ""
    bars: list[Markup] = field(default_factory=list)
    examples: list[_ExampleTable] = field(default_factory=list)
    focus: list[str] = field(default_factory=list)


def _anchor(name: str) -> str:
    """An HTML id made from a suite name."""
    return "suite-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _suite_keys(scorecard: Scorecard, suite: str) -> list[str]:
    """The suite's metric keys in first-seen order across subjects."""
    return [key for s, key in rows(scorecard) if s == suite]


def _suite_view(scorecard: Scorecard, suite: str, samples: Sequence[Mapping[str, Any]],
                focus: Sequence[str] = ()) -> _SuiteView:
    """Headline and breakdown tables, notes, missing metrics, plots and worst examples of one suite, as its metric
    declarations say (which keys are headlines, which plot shows what, how samples rank)."""
    specs = metric_specs(suite)
    results = _suite_results(scorecard, suite)
    keys = _suite_keys(scorecard, suite)
    head, breakdown = headline_keys(suite, keys)
    versions = sorted({r.suite_version for _, r in results}) or [scorecard.run.suites.get(suite, "?")]
    missing = _by_subjects(scorecard, suite, ((s, f"{k}: {why}") for s, r in results for k, why in r.missing.items()))
    roc_specs = [spec for spec in specs if spec.plot == "roc"]
    draw_roc = bool(roc_specs) or not specs  # an undeclared suite: whatever `details.roc` it left
    rank_keys = list(dict.fromkeys(
        spec.rank_samples_by for spec in sorted(specs, key=lambda sp: not sp.headline) if spec.rank_samples_by))
    bar_keys = [k for k in keys if (sp := find_spec(specs, k)) is None or sp.plot == "bars"]  # undeclared: drawn
    return _SuiteView(
        name=suite, anchor=_anchor(suite), versions=", ".join(versions),
        data_sha256=", ".join(sorted({r.data_sha256 for _, r in results})),
        rows=[_row(scorecard, suite, k) for k in head],
        breakdown_rows=[_row(scorecard, suite, k) for k in breakdown],
        notes=_by_subjects(scorecard, suite, ((s, note) for s, r in results for note in r.notes)),
        missing=missing,
        roc=[roc_chart(scorecard, attack, curves) for attack, curves in _roc_curves(scorecard, suite).items()]
        if draw_roc else [],
        roc_title=roc_specs[0].meaning if roc_specs else "ROC curves",
        bars=[bar_chart(scorecard, suite, family) for family in metric_families(bar_keys)],
        examples=_example_tables(samples, suite, rank_keys, focus),
        focus=list(focus),
    )


def ticks(text: object) -> Markup:
    """Escape `text`, then show Markdown `code` spans as <code> (notes and reasons use backticks)."""
    escaped = str(escape(str(text)))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """The Jinja2 environment of the report templates, autoescaping everything."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.reports", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["ticks"] = ticks
    return env


def render_html(scorecard: Scorecard, samples: list[dict] | None = None, annotations: list[dict] | None = None,
                sources: Sequence[str] | None = None) -> str:
    """The whole report as one HTML document: the verdict and the gates first, then headline metrics per suite with
    breakdowns collapsed, plots, worst examples, the compliance annex, the sign-off trail (`annotations`: entries of
    annotations.jsonl) and provenance; the footer names the files it was rendered from (`sources`)."""
    samples = samples or []
    verdict_rows = verdict(scorecard)
    marked: dict[str, list[str]] = {}
    for row in verdict_rows:
        for c in row.cells:
            if c.mark in ("fail", "flag"):
                marked.setdefault(c.suite, []).append(row.subject)
    suites = [_suite_view(scorecard, name, samples, marked.get(name, [])) for name in _suite_names(scorecard)]
    colours = _colours(scorecard.subjects)
    tags = {s.name: dict(getattr(s, "tags", None) or {}) for s in scorecard.subjects}
    return _environment().get_template("report.html.j2").render(
        sc=scorecard, run=scorecard.run, subjects=scorecard.subjects, colours=colours, tags=tags,
        show_tags=any(tags.values()), verdict=verdict_rows, verdict_suites=suite_order(scorecard), marks=MARK_SYMBOL,
        suites=suites, overview=[r for v in suites for r in v.rows],
        failed_gates=[g for g in scorecard.gates if not g.passed], fmt=fmt,
        annex=annex_sections(scorecard), annex_version=mapping_version(), annotations=annotations or [],
        sources=list(sources or ["scorecard.json", *(["samples.jsonl"] if samples else []),
                                 *(["annotations.jsonl"] if annotations else [])]),
    )
