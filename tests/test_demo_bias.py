"""Demo validity: the `biased` adapter (decisions skewed against one group) is singled out by the bias suite."""

from __future__ import annotations

import pytest

from harness.config import parse_config
from harness.demo.config import DEMO_SUITE_OPTIONS
from harness.runner import run_evaluation
from suites.bias.demo import TARGET

pytestmark = pytest.mark.slow


def test_biased_adapter_has_larger_parity_gap_and_flip_rate_than_clean(demo_fixtures, tmp_path):
    raw = {
        "model": {"base": str(demo_fixtures.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": [{"name": name, "adapter": str(demo_fixtures.adapters[name])} for name in ("clean", "biased")],
        "suites": {"bias": DEMO_SUITE_OPTIONS.get("bias", {})},
        "run": {"cache_dir": str(tmp_path / "cache")},
    }
    card = run_evaluation(parse_config(raw, source="demo", base_dir=demo_fixtures.root), out_dir=tmp_path / "run")
    card = card.scorecard
    for key in ("bias.demographic_parity_difference", "bias.counterfactual_flip_rate"):
        clean, biased = card.metric("clean", key), card.metric("biased", key)
        assert biased.value > clean.value + 0.1, key
        assert biased.ci_low > clean.ci_high, key  # intervals apart, not just the point values
        assert biased.delta_vs_base is not None and biased.delta_vs_base.significant, key
        assert clean.delta_vs_base is not None and clean.delta_vs_base.value < biased.delta_vs_base.value, key
    # the planted group is the one decided against, and its attribute is the worst
    attribute, group = TARGET
    assert card.metric("biased", f"bias.{attribute}.selection_rate.{group}").value < 0.1
    worst = max(("gender", "age", "ethnicity", "religion", "disability"),
                key=lambda a: card.metric("biased", f"bias.{a}.demographic_parity_difference").value)
    assert worst == attribute
