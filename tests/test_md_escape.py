"""Markdown injection (issue 20 item 7): user- and model-controlled strings stay inert text in every Markdown output."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from harness.reports.md_escape import md_code, md_text
from harness.scorecard import GateResult, MetricResult, RunInfo, Scorecard, SubjectInfo, SuiteResult

HOSTILE = ("x | y\n# Heading\n- item\n<script>alert(1)</script><img src=x onerror=alert(2)>"
           "[click](javascript:alert(3)) `code` **bold**")
_MD = MarkdownIt("commonmark").enable("table")


def _html(markdown: str) -> str:
    return _MD.render(markdown)


def _assert_inert(html: str) -> None:
    assert "<script" not in html and "<img" not in html and "javascript:alert(3)\"" not in html
    assert "<h1>Heading" not in html and "<li>item" not in html and 'href="javascript' not in html


def _card() -> Scorecard:
    metric = MetricResult(value=0.5, ci_low=0.4, ci_high=0.6, n=10, higher_is_better=False)
    results = {name: {"overpersonalization": SuiteResult(
        suite_version="1", data_sha256="d" * 64, notes=[f"domain {HOSTILE}"],
        metrics={"op_rate": metric, f"op_rate.domain.{HOSTILE}": metric})} for name in ("base", "a")}
    return Scorecard(
        run=RunInfo(id="r1", started_at="2026-11-28T00:00:00", finished_at="2026-11-28T00:01:00",
                    harness_version="0", config_sha256="c" * 64, seed=0, env={"device": "cpu"}),
        subjects=[SubjectInfo(name="base", kind="base", path="/x", sha256="s" * 64),
                  SubjectInfo(name="a", kind="adapter", path="/y", sha256="t" * 64, tags={"strategy": HOSTILE})],
        results=results,
        gates=[GateResult(subject="a", metric=f"overpersonalization.op_rate.domain.{HOSTILE}", rule="value <= 0.1",
                          value=None, passed=False, reason=f"metric missing: {HOSTILE}")],
    )


@pytest.mark.parametrize("text", [HOSTILE, "1. first", "> quote", "a\r\nb", "tab\tand\x00nul"])
def test_md_text_renders_as_one_inert_paragraph_of_the_same_words(text):
    html = _html(md_text(text))
    _assert_inert(html)
    assert html.count("<p>") == 1 and "<ol" not in html and "<blockquote" not in html


def test_md_code_keeps_a_table_cell_whole():
    table = f"| a | b |\n|---|---|\n| {md_code(HOSTILE)} | z |\n"
    html = _html(table)
    assert html.count("<td>") == 2 and "<script" not in html.replace("&lt;script", "")


def test_scorecard_md_notes_and_tables_keep_hostile_text_inert():
    from harness.reports.markdown import render_markdown

    _assert_inert(_html(render_markdown(_card())))


def test_groups_md_keeps_a_hostile_tag_value_inert():
    from harness.reports.groups import render_groups_markdown

    html = _html(render_groups_markdown(_card(), "strategy"))
    _assert_inert(html)
    assert html.count("<th>") == 3  # metric, the one tag value, difference: no cell split off by a "|"


def test_the_gate_summary_keeps_a_hostile_metric_and_reason_inert():
    from harness.reports.junit import render_gate_summary

    card = _card()
    html = _html(render_gate_summary(card, card.gates))
    _assert_inert(html)
    rows = [r for r in html.split("<tr>") if "<td>" in r]
    assert len(rows) == 1 and rows[0].count("<td>") == 6
