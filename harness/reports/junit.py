"""JUnit XML for CI systems: one test case per subject × gate bound, gates on headline metrics and on breakdowns in
two test suites; failures carry value, threshold, CI."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.reports.cells import fmt
from harness.reports.md_escape import md_code, md_text
from harness.scorecard import GateResult, Scorecard


def _detail(gate: GateResult) -> str:
    if gate.detail:  # what was compared, named (harness/gates.py)
        return f"{gate.metric}: {gate.detail}, required {gate.rule}"
    ci = f" (95% CI {fmt(gate.ci_low)} to {fmt(gate.ci_high)})" if gate.ci_low is not None else ""
    value = "missing" if gate.value is None else fmt(gate.value)
    reason = f"; {gate.reason}" if gate.reason else ""
    return f"{gate.metric}: {value}{ci}, required {gate.rule}{reason}"


def _is_headline(metric: str) -> bool:
    """Whether `<suite>.<key>` is a headline metric by its suite's declaration."""
    from harness.metrics import is_headline
    from harness.registry import metric_specs

    suite, _, key = metric.partition(".")
    return is_headline(metric_specs(suite), key)


def render_junit(scorecard: Scorecard, gates: list[GateResult]) -> str:
    """A <testsuites> document with the gates on headline metrics and those on breakdowns as two test suites;
    `warn` gates that fail are reported in system-out, not as failures."""
    failures = sum(1 for g in gates if not g.passed and g.severity == "error")
    root = ET.Element("testsuites", name="ppeval", tests=str(len(gates)), failures=str(failures))
    groups = {"headline metrics": [g for g in gates if _is_headline(g.metric)]}
    groups["breakdown metrics"] = [g for g in gates if g not in groups["headline metrics"]]
    for label, members in groups.items():
        if not members and label == "breakdown metrics":
            continue
        failed = sum(1 for g in members if not g.passed and g.severity == "error")
        suite = ET.SubElement(root, "testsuite", name=f"ppeval gates on {label} ({scorecard.run.id})",
                              tests=str(len(members)), failures=str(failed), errors="0", skipped="0",
                              timestamp=scorecard.run.finished_at)
        for gate in members:
            case = ET.SubElement(suite, "testcase", classname=f"ppeval.{gate.subject}",
                                 name=f"{gate.metric} {gate.rule}")
            if gate.passed:
                continue
            if gate.severity == "error":
                failure = ET.SubElement(case, "failure", message=_detail(gate), type="GateFailed")
                failure.text = _detail(gate)
            else:
                ET.SubElement(case, "system-out").text = f"WARNING (severity warn): {_detail(gate)}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_gate_summary(scorecard: Scorecard, gates: list[GateResult]) -> str:
    """A Markdown summary for a CI job page ($GITHUB_STEP_SUMMARY): verdict first, then every gate."""
    errors = [g for g in gates if not g.passed and g.severity == "error"]
    warnings = [g for g in gates if not g.passed and g.severity == "warn"]
    verdict = "❌ **ppeval gates failed**" if errors else "✅ **ppeval gates passed**"
    lines = [f"## {verdict}", "",
             f"Run {md_code(scorecard.run.id)} · {len(gates)} checks · {len(errors)} failed · "
             f"{len(warnings)} warnings", "",
             "| | subject | metric | rule | value | 95% CI |", "|---|---|---|---|---|---|"]
    for g in gates:
        mark = "✅" if g.passed else ("❌" if g.severity == "error" else "⚠️")
        ci = f"[{fmt(g.ci_low)}, {fmt(g.ci_high)}]" if g.ci_low is not None else "–"
        value = fmt(g.value) if g.value is not None else f"missing: {md_text(g.reason)}"
        lines.append(f"| {mark} | {md_text(g.subject)} | {md_code(g.metric)} | {g.rule} | {value} | {ci} |")
    return "\n".join(lines) + "\n"
