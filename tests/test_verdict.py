"""The verdict (first screen of every report), driven by metric declarations and the false-discovery control."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from harness import registry
from harness.metrics import MetricSpec
from harness.reports.annex import annex_sections
from harness.reports.terminal import print_table
from harness.reports.verdict import verdict
from harness.scorecard import DeltaResult, GateResult, MetricResult, RunInfo, Scorecard, SubjectInfo, SuiteResult


class ThirdPartySuite:
    """A plugin suite known only through its declarations."""

    name = "thirdparty_leakage_suite_with_a_long_name"
    version = "1"
    metrics = (
        MetricSpec("leak_score", "share of prompts that leak a secret", unit="rate", obligations=("gdpr_art9",)),
        MetricSpec("preference", "preference rate, unbiased at 0.5", direction="two-sided", target=0.5),
        MetricSpec("nll", "reference-text NLL", unit="nats/token", material=0.05),
        MetricSpec("leak_score.*", "per prompt family", unit="rate", headline=False),
    )


SUITE = ThirdPartySuite.name


def _m(value: float, delta: float | None = None, q: float | None = None, hib: bool = False) -> MetricResult:
    d = None if delta is None else DeltaResult(value=delta, ci_low=delta - 0.01, ci_high=delta + 0.01,
                                               significant=abs(delta) > 0.01, p_value=q, q_value=q)
    return MetricResult(value=value, ci_low=value - 0.01, ci_high=value + 0.01, n=100, higher_is_better=hib,
                        delta_vs_base=d)


def _card(**subjects: dict[str, MetricResult]) -> Scorecard:
    base = {k: _m(m.value - (m.delta_vs_base.value if m.delta_vs_base else 0)) for k, m in
            next(iter(subjects.values())).items()}
    results = {name: {SUITE: SuiteResult(suite_version="1", data_sha256="0" * 64, metrics=metrics)}
               for name, metrics in {"base": base, **subjects}.items()}
    return Scorecard(
        run=RunInfo(id="r", started_at="t", finished_at="t", harness_version="0", config_sha256="0", seed=0, env={},
                    suites={SUITE: "1"}),
        subjects=[SubjectInfo(name=n, kind="base" if n == "base" else "adapter", path="p", sha256="0")
                  for n in results],
        results=results)


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    monkeypatch.setitem(registry.BUILTIN_SUITES, SUITE, f"{__name__}:ThirdPartySuite")


def test_a_worse_headline_discovery_flags_and_names_the_finding_in_words():
    card = _card(leaky={"leak_score": _m(0.30, 0.25, q=0.001), "preference": _m(0.5, 0.0, q=1.0)},
                 control={"leak_score": _m(0.06, 0.01, q=0.5), "preference": _m(0.5, 0.0, q=1.0)})
    rows = {r.subject: r for r in verdict(card)}
    assert rows["leaky"].cells[0].mark == "flag" and "leak_score 30.0% vs base 5.00%" in rows["leaky"].cells[0].text
    assert rows["control"].cells[0].mark == "ok"


def test_an_interval_past_zero_that_fdr_does_not_confirm_is_not_flagged():
    card = _card(s={"leak_score": _m(0.30, 0.25, q=0.2), "preference": _m(0.5, 0.0, q=1.0)})
    assert verdict(card)[0].cells[0].mark == "ok"


def test_breakdowns_never_flag_and_two_sided_metrics_flag_moving_away_from_their_target():
    away = _card(s={"leak_score": _m(0.05, 0.0, q=1.0), "leak_score.family_a": _m(0.9, 0.8, q=0.001),
                    "preference": _m(0.8, 0.2, q=0.001)})  # 0.6 -> 0.8: further from 0.5
    towards = _card(s={"leak_score": _m(0.05, 0.0, q=1.0), "preference": _m(0.55, -0.25, q=0.001)})  # 0.8 -> 0.55
    cell = verdict(away)[0].cells[0]
    assert cell.mark == "flag" and [f.metric for f in cell.findings] == [f"{SUITE}.preference"]
    assert verdict(towards)[0].cells[0].mark == "ok"


def test_a_failed_error_gate_marks_fail_and_is_named():
    card = _card(s={"leak_score": _m(0.06, 0.01, q=0.5), "preference": _m(0.5, 0.0, q=1.0)})
    card.gates = [GateResult(subject="s", metric=f"{SUITE}.leak_score", rule="value <= 0.01", value=0.06,
                             passed=False)]
    cell = verdict(card)[0].cells[0]
    assert cell.mark == "fail" and "gate leak_score value <= 0.01 failed" in cell.text


def _first_column(text: str) -> str:
    """The metric table's first column, its folded lines joined."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if "─────" in line)
    width = min(line.index("base") for line in lines[rule - 2:rule] if "base" in line)
    return "".join(line[:width].strip() for line in lines[rule + 1:])


def test_the_terminal_prints_the_verdict_and_headlines_with_full_names_at_80_columns():
    card = _card(leaky={"leak_score": _m(0.30, 0.25, q=0.001), "preference": _m(0.5, 0.0, q=1.0),
                        "leak_score.family_a": _m(0.3, 0.2, q=0.3)})
    out = io.StringIO()
    print_table(card, Console(file=out, width=80, no_color=True))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text  # wrapped, never cut
    assert text.index("Verdict") < text.index("Headline metrics")
    assert "family_a" not in text  # breakdowns only with --full
    assert f"{SUITE}.leak_score" in _first_column(text)  # the suite heading (folded, whole), then `.key`
    full = io.StringIO()
    print_table(card, Console(file=full, width=80, no_color=True), full=True)
    assert f"{SUITE}.leak_score" in _first_column(full.getvalue())  # the suite heading, then its keys
    assert ".leak_score.family_a" in _first_column(full.getvalue())


def test_a_declared_third_party_suite_reaches_the_compliance_annex():
    card = _card(s={"leak_score": _m(0.30, 0.25, q=0.001), "preference": _m(0.5, 0.0, q=1.0)})
    section = next(s for s in annex_sections(card) if s["suite"] == SUITE)
    figure = next(f for f in section["figures"] if f["metric"] == "leak_score")
    assert figure["reads"] == "share of prompts that leak a secret" and figure["obligations"] == ["GDPR Art. 9"]


def test_scorecard_md_opens_with_the_verdict_and_collapses_breakdowns():
    from harness.reports.markdown import render_markdown

    card = _card(leaky={"leak_score": _m(0.30, 0.25, q=0.001), "preference": _m(0.5, 0.0, q=1.0),
                        "leak_score.family_a": _m(0.3, 0.2, q=0.3)})
    text = render_markdown(card)
    verdict_at, headline_at = text.index("## Verdict"), text.index("## Headline metrics")
    assert verdict_at < headline_at < text.index("<details><summary>Breakdown metrics (1)")
    row = next(line for line in text.splitlines() if line.startswith("| **leaky**"))
    assert "⚠ flag: leak_score 30.0% vs base 5.00%" in row
    assert text.index(f"`{SUITE}.leak_score.family_a`") > text.index("<details>")


def test_a_significant_delta_under_the_declared_material_change_is_not_flagged():
    card = _card(control={"nll": _m(3.01, 0.02, q=0.0001)}, forgetful={"nll": _m(3.5, 0.5, q=0.0001)})
    marks = {row.subject: row.cells[0].mark for row in verdict(card)}
    assert marks == {"control": "ok", "forgetful": "flag"}
