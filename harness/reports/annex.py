"""The compliance annex: each suite's figures mapped to the obligations they speak to, with gates, caveats and power.

The mapping (obligations, figures, what is not measured) lives in the versioned `harness/data/obligations.toml`,
not here; this module only joins it with a scorecard. `annex_sections` gives plain data (for the HTML report),
`render_annex_markdown` the Markdown (annex.md, and the annex section of scorecard.md).
"""

from __future__ import annotations

import fnmatch
import sys
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, TypedDict

from harness.reports.cells import fmt, rows
from harness.reports.md_escape import md_code, md_text
from harness.scorecard import MetricResult, Scorecard

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CI_WIDTH = 0.2
MAPPING_FILE = "data/obligations.toml"


class Obligation(TypedDict):
    id: str
    short: str  # e.g. "GDPR Art. 9"
    name: str
    reference: str
    requirement: str


class GateView(TypedDict):
    rule: str
    result: str  # pass | FAIL | WARN
    reason: str


class FigureRow(TypedDict):
    subject: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    delta: float | None
    delta_ci_low: float | None
    delta_ci_high: float | None
    significant: bool | None
    gates: list[GateView]
    ci_width: float | None
    width_limit: float | None
    underpowered: bool


class Figure(TypedDict):
    metric: str
    obligations: list[str]  # short labels
    reads: str
    rows: list[FigureRow]
    missing: list[tuple[str, str]]  # (subject, why not computed)


class Caveat(TypedDict):
    text: str
    subjects: str


class Power(TypedDict):
    supported: bool
    statements: list[str]


class Section(TypedDict):
    suite: str
    version: str
    mapped: bool
    measures: str
    obligations: list[Obligation]
    figures: list[Figure]
    caveats: list[Caveat]
    not_measured: list[str]
    power: Power


# ---------------------------------------------------------------------------------------------- the mapping
@lru_cache(maxsize=4)
def load_obligations(path: str | None = None) -> dict[str, Any]:
    """The obligations mapping: the packaged file, or `path` (for a reviewer's own mapping or a test)."""
    text = Path(path).read_text(encoding="utf-8") if path else files("harness").joinpath(MAPPING_FILE).read_text(
        encoding="utf-8")
    data = tomllib.loads(text)
    for key in ("version", "obligations", "suites"):
        if key not in data:
            raise ValueError(f"obligations mapping {path or MAPPING_FILE}: missing `{key}`")
    return data


def _obligation(mapping: dict[str, Any], oid: str) -> Obligation:
    """One obligation by id; an id the file does not define is shown as itself."""
    entry = mapping["obligations"].get(oid, {})
    name = str(entry.get("name", oid))
    return Obligation(id=oid, short=name.split(" — ")[0], name=name, reference=str(entry.get("reference", "")),
                      requirement=str(entry.get("requirement", "")))


# ---------------------------------------------------------------------------------------------- figures
def _width_limit(scale: str, metric: MetricResult, spec: dict[str, Any], max_ci_width: float) -> float | None:
    """The widest 95% CI that still supports the figure as a headline, or None when no rule applies."""
    if scale == "auto":
        ends = [x for x in (metric.value, metric.ci_low, metric.ci_high) if x is not None]
        scale = "rate" if all(0.0 <= x <= 1.0 for x in ends) else ""
    if scale == "rate":
        return max_ci_width
    if scale == "signed_rate":
        return 2 * max_ci_width
    limit = spec.get("max_ci_width")
    return float(limit) if limit is not None else None


def _gates(scorecard: Scorecard, subject: str, metric: str) -> list[GateView]:
    """The policy gates evaluated on this subject and metric."""
    return [GateView(rule=g.rule, result="pass" if g.passed else ("FAIL" if g.severity == "error" else "WARN"),
                     reason=g.reason)
            for g in scorecard.gates if g.subject == subject and g.metric == metric]


def _row(scorecard: Scorecard, suite: str, subject: str, key: str, metric: MetricResult, spec: dict[str, Any],
         max_ci_width: float) -> FigureRow:
    """One subject's figure with its interval, delta, gates and power verdict."""
    width = None if metric.ci_low is None or metric.ci_high is None else metric.ci_high - metric.ci_low
    limit = _width_limit(str(spec.get("scale", "")), metric, spec, max_ci_width)
    d = metric.delta_vs_base
    return FigureRow(
        subject=subject, value=metric.value, ci_low=metric.ci_low, ci_high=metric.ci_high, n=metric.n,
        delta=d.value if d else None, delta_ci_low=d.ci_low if d else None, delta_ci_high=d.ci_high if d else None,
        significant=d.significant if d else None, gates=_gates(scorecard, subject, f"{suite}.{key}"),
        ci_width=width, width_limit=limit, underpowered=width is None or (limit is not None and width > limit),
    )


def _figure_keys(patterns: list[str], keys: list[str], missing: set[str]) -> list[str]:
    """Metric keys a figure entry names: pattern matches among the metrics, plain names also when missing."""
    out: dict[str, None] = {}
    for pattern in patterns:
        out.update(dict.fromkeys(k for k in keys if fnmatch.fnmatchcase(k, pattern)))
        if pattern in missing:
            out[pattern] = None
    return list(out)


def _figure(scorecard: Scorecard, suite: str, key: str, spec: dict[str, Any], labels: list[str],
            max_ci_width: float) -> Figure:
    """A figure across every subject that ran the suite."""
    figure = Figure(metric=key, obligations=labels, reads=str(spec.get("reads", "")), rows=[], missing=[])
    for subject in scorecard.subjects:
        result = scorecard.results.get(subject.name, {}).get(suite)
        if result is None:
            continue
        metric = result.metrics.get(key)
        if metric is not None:
            figure["rows"].append(_row(scorecard, suite, subject.name, key, metric, spec, max_ci_width))
        else:
            figure["missing"].append((subject.name, result.missing.get(key, "not computed for this subject")))
    return figure


def _figures(scorecard: Scorecard, suite: str, entry: dict[str, Any], mapping: dict[str, Any],
             max_ci_width: float) -> list[Figure]:
    """The mapped figures of a suite, then any gated metric the mapping does not name."""
    keys = [k for s, k in rows(scorecard) if s == suite]
    missing = {k for r in _results(scorecard, suite) for k in r.missing}
    specs: list[dict[str, Any]] = list(entry.get("figures", []))
    specs += _declared_figures(suite, specs)
    if not specs:  # a suite that neither the mapping nor its declarations describe: its top-level metrics
        specs = [{"metrics": [k for k in keys if "." not in k] + sorted(k for k in missing if "." not in k),
                  "scale": "auto"}]
    out: list[Figure] = []
    seen: set[str] = set()
    for spec in specs:
        labels = [_obligation(mapping, o)["short"] for o in spec.get("obligations", [])]
        for key in _figure_keys(list(spec.get("metrics", [])), keys, missing):
            if key not in seen:
                seen.add(key)
                out.append(_figure(scorecard, suite, key, spec, labels, max_ci_width))
    suite_labels = [_obligation(mapping, o)["short"] for o in entry.get("obligations", [])]
    for gate in scorecard.gates:
        g_suite, _, key = gate.metric.partition(".")
        if g_suite == suite and key not in seen:
            seen.add(key)
            spec = {"reads": "gated by the policy", "scale": "auto"}
            out.append(_figure(scorecard, suite, key, spec, suite_labels, max_ci_width))
    return out


def _declared_figures(suite: str, mapped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Figures from the suite's metric declarations: every headline metric that names obligations and that the
    mapping file does not already describe (so a third-party suite reaches the annex through its declarations)."""
    from harness.registry import metric_specs

    named = {m for spec in mapped for m in spec.get("metrics", [])}
    return [{"metrics": [d.key], "obligations": list(d.obligations), "reads": d.meaning,
             "scale": d.unit if d.unit in ("rate", "signed_rate") else "auto"}
            for d in metric_specs(suite) if d.headline and d.obligations and d.key not in named]


# ---------------------------------------------------------------------------------------------- caveats and power
def _results(scorecard: Scorecard, suite: str) -> list[Any]:
    return [r for s in scorecard.subjects if (r := scorecard.results.get(s.name, {}).get(suite)) is not None]


def _who(pairs: list[tuple[str, str]], everyone: list[str]) -> list[Caveat]:
    """Deduplicate (subject, text) into caveats naming their subjects ("all subjects" when everyone)."""
    seen: dict[str, list[str]] = {}
    for subject, text in pairs:
        seen.setdefault(text, []).append(subject)
    return [Caveat(text=t, subjects="all subjects" if w == everyone and len(w) > 1 else ", ".join(w))
            for t, w in seen.items()]


def _caveats(scorecard: Scorecard, suite: str) -> list[Caveat]:
    """Every note of the suite, then every metric it could not compute, with the subjects concerned."""
    ran = [s.name for s in scorecard.subjects if suite in scorecard.results.get(s.name, {})]
    pairs = [(s, note) for s in ran for note in scorecard.results[s][suite].notes]
    pairs += [(s, f"{key} not computed: {why}")
              for s in ran for key, why in scorecard.results[s][suite].missing.items()]
    return _who(pairs, ran)


def _power(figures: list[Figure], max_ci_width: float) -> Power:
    """Whether the sample sizes support each headline: intervals within their width limit, nothing refused."""
    statements, unruled = [], []
    for f in figures:
        if any(r["width_limit"] is None for r in f["rows"]):
            unruled.append(f['metric'])
        for r in f["rows"]:
            if r["ci_width"] is None:
                statements.append(f"{f['metric']} of {r['subject']}: no 95% interval could be computed (n={r['n']})")
            elif r["underpowered"]:
                statements.append(f"{f['metric']} of {r['subject']}: 95% CI width {fmt(r['ci_width'])} > "
                                  f"{fmt(r['width_limit'])} (n={r['n']}); too few items for a headline figure")
        for subject, why in f["missing"]:
            statements.append(f"{f['metric']} of {subject}: not reported — {why}")
    supported = not statements
    if supported:
        statements = [f"Sample sizes support every headline figure of this suite that has a width rule: each 95% "
                      f"interval is within its limit ({fmt(max_ci_width)} for rates in [0, 1]) and no figure was "
                      "refused."]
    if unruled:
        statements.append(f"{', '.join(unruled)}: no CI-width rule for this scale; judge the intervals above directly.")
    return Power(supported=supported, statements=statements)


# ---------------------------------------------------------------------------------------------- sections
def _suite_names(scorecard: Scorecard) -> list[str]:
    """Suites in run order, then any others found in the results."""
    names = dict.fromkeys(scorecard.run.suites)
    for subject in scorecard.subjects:
        names.update(dict.fromkeys(scorecard.results.get(subject.name, {})))
    return [n for n in names if _results(scorecard, n)]


def annex_sections(scorecard: Scorecard, max_ci_width: float = DEFAULT_CI_WIDTH,
                   mapping_path: str | None = None) -> list[Section]:
    """One section per suite that ran: obligations, figures per subject with gates, caveats, power."""
    mapping = load_obligations(mapping_path)
    sections = []
    for suite in _suite_names(scorecard):
        entry: dict[str, Any] = mapping["suites"].get(suite, {})
        figures = _figures(scorecard, suite, entry, mapping, max_ci_width)
        notes = " ".join(n for r in _results(scorecard, suite) for n in r.notes)
        conditional = [str(c["say"]) for c in entry.get("conditional", []) if c.get("when_note_contains", "") in notes]
        versions = sorted({r.suite_version for r in _results(scorecard, suite)})
        sections.append(Section(
            suite=suite, version=", ".join(versions), mapped=bool(entry),
            measures=str(entry.get("measures", "A suite the obligations mapping does not cover: its figures are listed "
                                                "without a mapping.")),
            obligations=[_obligation(mapping, o) for o in entry.get("obligations", [])],
            figures=figures, caveats=_caveats(scorecard, suite),
            not_measured=[*conditional, *(str(x) for x in entry.get("not_measured", []))],
            power=_power(figures, max_ci_width),
        ))
    return sections


def mapping_version(mapping_path: str | None = None) -> str:
    """The version of the obligations mapping the annex quotes."""
    return str(load_obligations(mapping_path)["version"])


# ---------------------------------------------------------------------------------------------- Markdown
def _md(text: str) -> str:
    return md_text(text)  # the one helper for user- and model-controlled text (harness/reports/md_escape.py)


def _interval(low: float | None, high: float | None) -> str:
    return f"[{fmt(low)}, {fmt(high)}]"


def _row_md(f: Figure, r: FigureRow) -> str:
    """A table row: metric, subject, value with CI and n, delta, gates, power."""
    delta = "–" if r["delta"] is None else (f"{r['delta']:+.3g} {_interval(r['delta_ci_low'], r['delta_ci_high'])}"
                                           + (" *" if r["significant"] else ""))
    gates = "<br>".join(f"{g['rule']}: " + ("pass" if g["result"] == "pass" else f"**{g['result']}**")
                        + (f" — {_md(g['reason'])}" if g["reason"] and g["result"] != "pass" else "")
                        for g in r["gates"]) or "no gate"
    power = "⚠ CI too wide" if r["underpowered"] else ("ok" if r["width_limit"] is not None else "no rule")
    return (f"| {md_code(f['metric'])} | {_md(r['subject'])} | {fmt(r['value'])} "
            f"{_interval(r['ci_low'], r['ci_high'])} | {r['n']} | {delta} | {gates} | {power} |")


def _section_md(s: Section, h: str) -> list[str]:
    """The Markdown lines of one suite."""
    lines = [f"{h} {s['suite']}" + (f" (version {s['version']})" if s["version"] else ""), "", f"**Measures.** "
             f"{_md(s['measures'])}", ""]
    if s["obligations"]:
        lines += ["**Speaks to.** " + "; ".join(o["name"] for o in s["obligations"]) + ".", ""]
    if s["figures"]:
        lines += ["**Figures.**", ""]
        groups: dict[tuple[str, str], list[str]] = {}  # figures of one mapping entry share a line
        for f in s["figures"]:
            groups.setdefault(("; ".join(f["obligations"]) or "unmapped", f["reads"]), []).append(md_code(f["metric"]))
        lines += [f"- {', '.join(names)} ({labels})" + (f": {_md(reads)}" if reads else "")
                  for (labels, reads), names in groups.items()]
        lines += ["", "| figure | subject | value [95% CI] | n | Δ vs base [95% CI] | policy gate | power |",
                  "|---|---|---|---|---|---|---|"]
        lines += [_row_md(f, r) for f in s["figures"] for r in f["rows"]]
        lines.append("")
    verdict = "supported" if s["power"]["supported"] else "**not every headline is supported**"
    lines += [f"**Power** ({verdict}).", "", *[f"- {_md(x)}" for x in s["power"]["statements"]], ""]
    if s["caveats"]:
        lines += ["**Caveats recorded in this run.**", "",
                  *[f"- {_md(c['text'])} — _{_md(c['subjects'])}_" for c in s["caveats"]], ""]
    if s["not_measured"]:
        lines += ["**Not measured.**", "", *[f"- {_md(x)}" for x in s["not_measured"]], ""]
    return lines


def render_annex_markdown(scorecard: Scorecard, max_ci_width: float = DEFAULT_CI_WIDTH, level: int = 1,
                          mapping_path: str | None = None) -> str:
    """The annex as Markdown; `level` is the heading level of its title (2 inside scorecard.md)."""
    h = "#" * level
    sections = annex_sections(scorecard, max_ci_width, mapping_path)
    mapping = load_obligations(mapping_path)
    lines = [
        f"{h} Compliance annex — run `{scorecard.run.id}`", "",
        f"Obligations mapping version {mapping_version(mapping_path)} (`harness/{MAPPING_FILE}`). Each figure is "
        "listed per subject with its 95% interval, its delta against the base (`*` significant), and the policy "
        "gates evaluated on it. Power rule: a headline whose 95% CI is wider than "
        f"{fmt(max_ci_width)} (rates in [0, 1]; {fmt(2 * max_ci_width)} for signed rates; the mapping's own limit "
        "for other scales) is flagged, and a figure the suite refused (e.g. MIA TPR at 0.1% FPR below 1,000 "
        "non-members) is stated. A reading aid for reviewers, not legal advice.", "",
    ]
    for s in sections:
        lines += _section_md(s, h + "#")
    ids: set[str] = set()
    for s in sections:
        entry = mapping["suites"].get(s["suite"], {})
        ids.update(entry.get("obligations", []))
        ids.update(o for f in entry.get("figures", []) for o in f.get("obligations", []))
    referenced = [_obligation(mapping, oid) for oid in mapping["obligations"] if oid in ids]
    if referenced:
        lines += [f"{h}# Obligations referenced", ""]
        lines += [f"- **{o['name']}** — {o['reference']}. {o['requirement']}" for o in referenced]
    return "\n".join(lines).rstrip() + "\n"
