"""The shipped example policy judges the demo right: each planted adapter fails a gate of its own suite, the
control (`clean`) passes every error gate (issue 21). Slow: it trains the demo fixtures and runs every suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import parse_config
from harness.demo.config import DEMO_SUITE_OPTIONS, DEMO_TAGS
from harness.gates import apply_policy, load_policy
from harness.registry import suite_names
from harness.runner import run_evaluation

pytestmark = pytest.mark.slow

POLICY = Path(__file__).resolve().parents[1] / "examples" / "policy.toml"
#: the suites that should single out each planted adapter (README's demo table)
PLANTED = {"leaky": {"memorization", "pii_leakage"}, "biased": {"bias"}, "overpersonal": {"overpersonalization"}}


@pytest.fixture(scope="module")
def demo_scorecard(demo_fixtures, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("policy-demo")
    raw = {
        "model": {"base": str(demo_fixtures.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": [{"name": name, "adapter": str(path), "tags": DEMO_TAGS.get(name, {})}
                     for name, path in demo_fixtures.adapters.items()],
        "data": {"training": str(demo_fixtures.training), "holdout": str(demo_fixtures.holdout),
                 "canaries": str(demo_fixtures.canaries)},
        "suites": {name: dict(DEMO_SUITE_OPTIONS.get(name, {})) for name in suite_names()},
        "run": {"cache_dir": str(tmp / "cache")},
    }
    return run_evaluation(parse_config(raw, source="demo", base_dir=demo_fixtures.root), out_dir=tmp / "run").scorecard


def test_every_planted_adapter_fails_a_gate_of_its_own_suite(demo_scorecard):
    gates = apply_policy(demo_scorecard, load_policy(POLICY))
    for subject, suites in PLANTED.items():
        failed = {g.metric for g in gates if g.subject == subject and not g.passed and g.severity == "error"}
        assert {m.partition(".")[0] for m in failed} & suites, (subject, failed)


def test_the_control_passes_every_error_gate(demo_scorecard):
    gates = apply_policy(demo_scorecard, load_policy(POLICY))
    failed = [f"{g.metric} {g.rule}: {g.detail or g.reason}" for g in gates
              if g.subject == "clean" and not g.passed and g.severity == "error"]
    assert failed == []
