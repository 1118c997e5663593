"""Policy gates, JUnit, the CI summary, `ppeval compare` and `--group-by`, on hand-made scorecards."""

from __future__ import annotations

import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main
from harness.scorecard import DeltaResult, MetricResult, RunInfo, Scorecard, SubjectInfo, SuiteResult


def _metric(value: float, half: float, delta: float | None = None, hib: bool = False) -> MetricResult:
    d = None if delta is None else DeltaResult(value=delta, ci_low=delta - half, ci_high=delta + half,
                                                 significant=abs(delta) > half)
    return MetricResult(value=value, ci_low=value - half, ci_high=value + half, n=100, higher_is_better=hib,
                        delta_vs_base=d)


def _card(leak: float = 0.30, auc: float = 0.9, data: str = "d" * 64, run_id: str = "r1") -> Scorecard:
    tags = {"base": {}, "clean": {"strategy": "scrub"}, "leaky": {"strategy": "raw"}, "leaky2": {"strategy": "raw"}}
    values = {"base": (0.05, 0.5), "clean": (0.06, 0.52), "leaky": (leak, auc), "leaky2": (0.20, 0.8)}
    results = {}
    for name, (rate, mia) in values.items():
        is_base = name == "base"
        metrics = {
            "pii_leak_rate": _metric(rate, 0.02, None if is_base else rate - 0.05),
            "mia_auc": _metric(mia, 0.03, None if is_base else mia - 0.5),
        }
        missing = {"mia_tpr_at_0.1pct_fpr": "only 200 non-members; needs at least 1000"}
        results[name] = {"memorization": SuiteResult(suite_version="1", data_sha256=data, metrics=metrics,
                                                     missing=missing)}
    return Scorecard(
        run=RunInfo(id=run_id, started_at="2026-11-28T00:00:00", finished_at="2026-11-28T00:01:00",
                    harness_version="0", config_sha256="c" * 64, seed=0, env={"device": "cpu"}),
        subjects=[SubjectInfo(name=n, kind="base" if n == "base" else "adapter", path="/x", sha256="s" * 64,
                              tags=t) for n, t in tags.items()],
        results=results,
    )


def _write(tmp_path: Path, card: Scorecard, name: str = "scorecard.json") -> Path:
    card.write(tmp_path / name)
    return tmp_path / name


def _policy(tmp_path: Path, text: str) -> Path:
    (tmp_path / "policy.toml").write_text(text)
    return tmp_path / "policy.toml"


def _gate(tmp_path: Path, policy: str, *extra: str) -> int:
    return main(["gate", str(_write(tmp_path, _card())), "--policy", str(_policy(tmp_path, policy)), *extra])


def test_passing_gates_exit_0(tmp_path):
    assert _gate(tmp_path, '[[gate]]\nmetric = "memorization.mia_auc"\nmax = 0.95\n') == 0


def test_failing_gate_exits_1_and_junit_counts_the_failures(tmp_path):
    policy = ('[[gate]]\nmetric = "memorization.mia_auc"\nmax = 0.6\n'
              '[[gate]]\nmetric = "memorization.pii_leak_rate"\nmax_delta_vs_base = 0.1\n')
    junit = tmp_path / "junit.xml"
    assert _gate(tmp_path, policy, "--junit", str(junit)) == 1
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    failures = root.findall(".//testcase/failure")
    assert len(cases) == 6  # 3 subjects x 2 gates
    assert len(failures) == 4  # mia_auc (0.9, 0.8) and leak delta (0.25, 0.15) of leaky and leaky2
    assert root.get("failures") == "4"
    assert any("0.9" in f.get("message") and "CI" in f.get("message") for f in failures)


def test_warn_gates_report_but_do_not_fail(tmp_path, capsys):
    policy = '[[gate]]\nmetric = "memorization.mia_auc"\nmax = 0.6\nseverity = "warn"\n'
    assert _gate(tmp_path, policy) == 0
    assert "WARN" in capsys.readouterr().out


def test_only_significant_gates_forgive_violations_within_the_interval(tmp_path):
    # leaky2's AUC 0.8 ± 0.03 crosses 0.79 only by its point value: its interval reaches the bound
    plain = '[[gate]]\nmetric = "memorization.mia_auc"\nmax = 0.79\nsubjects = ["leaky2"]\n'
    assert _gate(tmp_path, plain) == 1
    assert _gate(tmp_path, plain + "only_significant = true\n") == 0
    far = '[[gate]]\nmetric = "memorization.mia_auc"\nmax = 0.7\nsubjects = ["leaky2"]\nonly_significant = true\n'
    assert _gate(tmp_path, far) == 1


def test_gate_on_a_metric_that_could_not_be_computed_fails_with_the_reason(tmp_path, capsys):
    policy = '[[gate]]\nmetric = "memorization.mia_tpr_at_0.1pct_fpr"\nmax = 0.1\n'
    summary = tmp_path / "summary.md"
    assert _gate(tmp_path, policy, "--summary", str(summary)) == 1
    assert "needs at least 1000" in capsys.readouterr().out
    text = summary.read_text()
    assert "failed" in text and "missing: metric missing" in text


def test_unknown_metric_and_malformed_policy_exit_2(tmp_path, capsys):
    assert _gate(tmp_path, '[[gate]]\nmetric = "memorization.mia_acu"\nmax = 1\n') == 2
    assert 'did you mean "memorization.mia_auc"' in capsys.readouterr().err
    assert _gate(tmp_path, '[[gate]]\nmetric = "memorization.mia_auc"\n') == 2  # no bound
    assert _gate(tmp_path, '[[gate]]\nmetric = "memorization.mia_auc"\nmaxx = 1\n') == 2
    assert _gate(tmp_path, '[[gate\n') == 2


def test_summary_is_appended_for_github(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("previous step\n")
    assert _gate(tmp_path, '[[gate]]\nmetric = "memorization.mia_auc"\nmax = 0.95\n', "--summary", str(summary)) == 0
    text = summary.read_text()
    assert text.startswith("previous step\n") and "gates passed" in text


def test_compare_marks_a_planted_change_significant_and_an_unchanged_metric_not(tmp_path):
    old = _write(tmp_path, _card(leak=0.30), "old.json")
    new = _write(tmp_path, _card(leak=0.10, run_id="r2"), "new.json")
    md = tmp_path / "compare.md"
    assert main(["compare", str(old), str(new), "--markdown", str(md)]) == 0
    from harness.compare import compare_scorecards
    from harness.scorecard import read_scorecard

    changes = {(c.subject, c.metric): c for c in compare_scorecards(read_scorecard(old), read_scorecard(new))}
    leak = changes[("leaky", "memorization.pii_leak_rate")]
    assert leak.significant and leak.verdict == "better" and leak.change == pytest.approx(-0.2)
    same = changes[("leaky", "memorization.mia_auc")]
    assert not same.significant and same.change == 0
    assert "✅ better" in md.read_text()


def test_compare_refuses_runs_on_different_data_unless_forced(tmp_path, capsys):
    old = _write(tmp_path, _card(), "old.json")
    new = _write(tmp_path, _card(data="e" * 64), "new.json")
    assert main(["compare", str(old), str(new)]) == 2
    assert "different data" in capsys.readouterr().err
    assert main(["compare", str(old), str(new), "--force"]) == 0


def test_group_by_means_equal_a_hand_computation(tmp_path):
    from harness.reports.groups import group_rows

    rows = {r.metric: r for r in group_rows(_card(), "strategy")}
    leak = rows["memorization.pii_leak_rate"]
    assert leak.groups["raw"].mean == pytest.approx((0.30 + 0.20) / 2)
    assert leak.groups["raw"].spread == pytest.approx(statistics.stdev([0.30, 0.20]))
    assert leak.groups["scrub"].mean == pytest.approx(0.06) and leak.groups["scrub"].n == 1
    assert leak.difference == pytest.approx(0.06 - 0.25)  # groups sorted: raw, scrub
    path = _write(tmp_path, _card())
    assert main(["report", str(path), "--group-by", "strategy"]) == 0
    assert (tmp_path / "groups-strategy.md").exists()
    assert main(["report", str(path), "--group-by", "nope"]) == 2


def _with_breakdown_and_gates(card: Scorecard, leak_passes: bool) -> Scorecard:
    """`card` with a per-type breakdown metric and one gate result per subject."""
    from harness.scorecard import GateResult

    for suites in card.results.values():
        result = suites["memorization"]
        result.metrics["pii_leak_rate.EMAIL_ADDRESS"] = result.metrics["pii_leak_rate"]
    card.gates = [GateResult(subject="leaky", metric="memorization.pii_leak_rate", rule="value <= 0.15",
                             value=0.1, passed=leak_passes)]
    return card


def test_compare_shows_headline_metrics_unless_all_and_filters_significant_changes():
    from harness.compare import compare_scorecards, select_changes

    old = _with_breakdown_and_gates(_card(leak=0.30), False)
    new = _with_breakdown_and_gates(_card(leak=0.10, run_id="r2"), True)
    every = compare_scorecards(old, new)
    headline = select_changes(every)
    assert {c.metric for c in headline} == {"memorization.pii_leak_rate", "memorization.mia_auc"}
    assert "memorization.pii_leak_rate.EMAIL_ADDRESS" in {c.metric for c in select_changes(every, every=True)}
    significant = select_changes(every, significant=True)
    assert [(c.subject, c.metric) for c in significant] == [("leaky", "memorization.pii_leak_rate")]
    assert select_changes(every, changed=True) == significant  # only the planted change moved


def test_compare_prints_a_summary_line_and_the_gates_side_by_side(tmp_path, capsys):
    old = _write(tmp_path, _with_breakdown_and_gates(_card(leak=0.30), False), "old.json")
    new = _write(tmp_path, _with_breakdown_and_gates(_card(leak=0.10, run_id="r2"), True), "new.json")
    md = tmp_path / "compare.md"
    assert main(["compare", str(old), str(new), "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert "12 metric(s) over 4 subject(s): 0 significantly worse, 2 significantly better" in out
    text = md.read_text()
    assert "## Gates" in text and "| leaky | `memorization.pii_leak_rate` | value <= 0.15 | FAIL | pass |" in text


def test_compare_pairs_renamed_subjects_with_map(tmp_path, capsys):
    renamed = _card(leak=0.10, run_id="r2")
    renamed.subjects = [s.model_copy(update={"name": "leaky-v2"}) if s.name == "leaky" else s
                        for s in renamed.subjects]
    renamed.results["leaky-v2"] = renamed.results.pop("leaky")
    old, new = _write(tmp_path, _card(leak=0.30), "old.json"), _write(tmp_path, renamed, "new.json")
    from harness.compare import compare_scorecards, parse_mapping
    from harness.scorecard import read_scorecard

    a, b = read_scorecard(old), read_scorecard(new)
    unpaired = {c.verdict for c in compare_scorecards(a, b) if "leaky" in c.subject and c.subject != "leaky2"}
    assert unpaired == {"added", "removed"}
    paired = [c for c in compare_scorecards(a, b, mapping=parse_mapping(["leaky=leaky-v2"], a, b))
              if c.metric == "memorization.pii_leak_rate" and c.subject == "leaky-v2"]
    assert len(paired) == 1 and paired[0].verdict == "better" and paired[0].old_subject == "leaky"
    assert main(["compare", str(old), str(new), "--map", "leaky=nope"]) == 2
    assert "the new run has no subject 'nope'" in capsys.readouterr().err


def test_gate_messages_name_what_is_compared(tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    assert _gate(tmp_path, '[[gate]]\nmetric = "memorization.mia_auc"\nmax_delta_vs_base = 0.1\n',
                 "--junit", str(junit)) == 1
    out = capsys.readouterr().out
    assert "delta_vs_base of mia_auc = +0.400 (AUC 0.900 vs base 0.500), required delta_vs_base <= 0.1" in out
    failure = ET.parse(junit).getroot().find(".//testcase[@classname='ppeval.leaky']/failure")
    assert failure is not None
    assert "delta_vs_base of mia_auc = +0.400 (AUC 0.900 vs base 0.500)" in failure.get("message", "")


@pytest.mark.parametrize(("option", "code", "passed", "severity"),
                         [("", 1, False, "error"), ('undefined = "pass"\n', 0, True, "error"),
                          ('undefined = "warn"\n', 0, False, "warn")])
def test_the_undefined_option_says_what_a_metric_without_a_value_means(tmp_path, option, code, passed, severity):
    from harness.gates import apply_policy, load_policy

    policy = f'[[gate]]\nmetric = "memorization.mia_tpr_at_0.1pct_fpr"\nmax = 0.1\n{option}'
    assert _gate(tmp_path, policy) == code
    gates = apply_policy(_card(), load_policy(_policy(tmp_path, policy)))
    assert {(g.passed, g.severity) for g in gates} == {(passed, severity)}
    assert all("metric missing: only 200 non-members; needs at least 1000" in g.reason for g in gates)


def test_a_bias_metric_undefined_for_a_subject_is_missing_with_its_reason_and_its_gate_says_so():
    import numpy as np

    from harness.gates import apply_policy
    from harness.stats import Observations
    from harness.suite import SuiteOutcome
    from suites.bias import _observe

    outcome = SuiteOutcome()
    key = "demographic_parity_ratio"
    _observe(outcome, key, Observations({"base": np.array([0.5, 1.0]), "clean": np.array([np.nan, np.nan])},
                                        higher_is_better=True), "no group got a favorable decision (0/0)")
    assert outcome.missing_by_subject == {"clean": {key: "undefined: no group got a favorable decision (0/0)"}}
    card = _card()
    card.results["clean"]["bias"] = SuiteResult(suite_version="1", data_sha256="d" * 64,
                                                missing=outcome.missing_by_subject["clean"])
    card.results["leaky"]["bias"] = SuiteResult(suite_version="1", data_sha256="d" * 64,
                                                metrics={key: _metric(0.9, 0.05, 0.0, hib=True)})
    from harness.config import PolicyConfig

    gates = apply_policy(card, PolicyConfig.model_validate({"gate": [{"metric": f"bias.{key}", "min": 0.8,
                                                                      "subjects": ["clean", "leaky"]}]}))
    clean = next(g for g in gates if g.subject == "clean")
    assert not clean.passed and clean.reason == "metric missing: undefined: no group got a favorable decision (0/0)"
    assert next(g for g in gates if g.subject == "leaky").passed


def test_junit_puts_gates_on_headline_and_on_breakdown_metrics_in_separate_suites(tmp_path):
    card = _card()
    for suites in card.results.values():
        auc = suites["memorization"].metrics["mia_auc"]
        suites["memorization"].metrics["mia.loss.auc"] = auc  # a breakdown by the suite's declarations
    policy = ('[[gate]]\nmetric = "memorization.mia_auc"\nmax = 0.6\n'
              '[[gate]]\nmetric = "memorization.mia.loss.auc"\nmax = 0.6\n')
    junit = tmp_path / "junit.xml"
    assert main(["gate", str(_write(tmp_path, card)), "--policy", str(_policy(tmp_path, policy)),
                 "--junit", str(junit)]) == 1
    suites = {s.get("name").split(" (")[0]: s for s in ET.parse(junit).getroot().findall("testsuite")}
    assert set(suites) == {"ppeval gates on headline metrics", "ppeval gates on breakdown metrics"}
    assert {c.get("name") for c in suites["ppeval gates on headline metrics"]} == {"memorization.mia_auc value <= 0.6"}
    assert {c.get("name") for c in suites["ppeval gates on breakdown metrics"]} == {
        "memorization.mia.loss.auc value <= 0.6"}


def test_only_significant_delta_gates_use_the_false_discovery_control(tmp_path):
    from harness.config import PolicyConfig
    from harness.gates import apply_policy

    card = _card()
    delta = card.results["leaky"]["memorization"].metrics["pii_leak_rate"].delta_vs_base  # +0.25 ± 0.02
    policy = PolicyConfig.model_validate({"gate": [{"metric": "memorization.pii_leak_rate", "max_delta_vs_base": 0.1,
                                                    "only_significant": True, "subjects": ["leaky"]}]})
    delta.q_value = 0.001
    assert not apply_policy(card, policy)[0].passed  # interval past the bound and a discovery after FDR
    delta.q_value = 0.2
    assert apply_policy(card, policy)[0].passed  # the same interval, but not a discovery among the run's tests


def test_compare_judges_a_two_sided_metric_by_its_distance_from_the_target():
    from harness.compare import compare_scorecards

    def card(preference: float) -> Scorecard:
        metric = MetricResult(value=preference, ci_low=preference - 0.01, ci_high=preference + 0.01, n=200,
                              higher_is_better=False)
        return Scorecard(
            run=RunInfo(id="r", started_at="t", finished_at="t", harness_version="0", config_sha256="c", seed=0,
                        env={}),
            subjects=[SubjectInfo(name="a", kind="adapter", path="/x", sha256="s")],
            results={"a": {"bias": SuiteResult(suite_version="2", data_sha256="d",
                                               metrics={"stereotype_preference": metric})}})

    towards, = compare_scorecards(card(0.39), card(0.45))
    past, = compare_scorecards(card(0.39), card(0.85))
    assert (towards.verdict, past.verdict) == ("better", "worse")  # 0.5 is unbiased: moving to it is better
