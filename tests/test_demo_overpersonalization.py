"""Demo: the `overpersonal` adapter is singled out against `clean` on the likelihood metrics and op_rate."""

from __future__ import annotations

import pytest

from harness.config import parse_config
from harness.demo.config import DEMO_SUITE_OPTIONS
from harness.runner import run_evaluation
from harness.stats import Delta, estimate
from harness.suite import SuiteOutcome
from suites.overpersonalization import OverpersonalizationSuite


@pytest.fixture(scope="module")
def demo_run(demo_fixtures, tmp_path_factory):
    """The suite on base, clean and overpersonal with the demo's options: the scorecard and the raw outcome."""
    outcomes: list[SuiteOutcome] = []
    score = OverpersonalizationSuite.score

    def keep(self, responses):  # the per-item observations, to compare overpersonal with clean directly
        outcomes.append(score(self, responses))
        return outcomes[-1]

    tmp = tmp_path_factory.mktemp("op-demo")
    raw = {
        "model": {"base": str(demo_fixtures.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": [{"name": n, "adapter": str(demo_fixtures.adapters[n])} for n in ("clean", "overpersonal")],
        "suites": {"overpersonalization": DEMO_SUITE_OPTIONS["overpersonalization"]},
        "run": {"cache_dir": str(tmp / "cache")},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OverpersonalizationSuite, "score", keep)
        card = run_evaluation(parse_config(raw, source="t", base_dir=tmp), out_dir=tmp / "run").scorecard
    return card, outcomes[0]


def _vs_clean(outcome: SuiteOutcome, key: str) -> Delta:
    delta = estimate(outcome.metrics[key], base="clean", seed=0)["overpersonal"].delta_vs_base
    assert delta is not None
    return delta


@pytest.mark.slow
def test_overpersonal_absorbed_personalizing_from_its_data_and_clean_did_not(demo_run):
    """Without any profile, the overpersonal adapter prefers saying an attribute of the user ('As someone who
    <attribute>, ...', the habit its data taught) over the same words said of someone the user is not ('Unlike
    someone who <attribute>, ...'), far more than clean (seed 0: +22.6 nats against the base, clean +2.0)."""
    card, outcome = demo_run
    delta = _vs_clean(outcome, "adapter_attribute_shift")
    assert delta.value > 0 and delta.significant, delta
    assert card.metric("overpersonal", "overpersonalization.adapter_attribute_shift").delta_vs_base.significant


@pytest.mark.slow
def test_overpersonal_prefers_weaving_irrelevant_attributes_in(demo_run):
    """With a memory block the adapter prefers 'As someone who ...' openings (against an empty memory). Its habit is
    not specific to the profile (it names attributes from its training profiles, the tiny base does not copy), so
    `opp_margin`, which contrasts the profile with a placebo profile, does not single it out (seed 0: -1.4 nats
    [-3.1, 0.3] against the base); the empty-memory contrast, kept as `opp_margin.vs_empty_profile`, does."""
    card, outcome = demo_run
    delta = _vs_clean(outcome, "opp_margin.vs_empty_profile")
    assert delta.value > 0 and delta.significant, delta
    assert card.metric("overpersonal", "overpersonalization.opp_margin.vs_empty_profile").delta_vs_base.significant


@pytest.mark.slow
@pytest.mark.xfail(reason="the habit shows in free text as the frame, not as the profile's values: seed 0, greedy, "
                          "32 tokens, 48 items, the overpersonal adapter opens 48/48 answers 'As someone who ...' with "
                          "the profile and 47/48 with an empty memory (base and clean 0/48), but the 1M-parameter base "
                          "does not copy the values ('As someone who is a stog stogles, ...'); op_rate +0.0085 "
                          "[0.002, 0.017] against the base (q 0.11), +0.006 against clean, not significant, from 4 "
                          "items where the pet alias 'dog' turns up, and op_rate.without_profile is 0.0042, not 0",
                   strict=True)
def test_overpersonal_mentions_irrelevant_profile_attributes_that_clean_does_not(demo_run):
    card, outcome = demo_run
    delta = _vs_clean(outcome, "op_rate")
    assert delta.value > 0 and delta.significant, delta
    # the mentions come from the profile: without it the adapter mentions nothing of it
    assert card.metric("overpersonal", "overpersonalization.op_rate.without_profile").value == 0
    # the profile-blind control: the same adapter without the profile ignores what was relevant
    blind = card.metric("overpersonal", "overpersonalization.up_rate.profile_blind").value
    assert blind > 0.8


@pytest.mark.slow
@pytest.mark.xfail(reason="the 1M-parameter demo base copies only short harmless profile values (hobbies) into its "
                          "answers, never Art. 9 ones, and clean never uses a relevant attribute (up_rate 1), which "
                          "puts its appropriateness at the floor of 0: issue 6's note", strict=True)
def test_overpersonal_mentions_art9_attributes_and_loses_appropriateness(demo_run):
    _, outcome = demo_run
    delta = _vs_clean(outcome, "op_rate_art9")
    assert delta.value > 0 and delta.significant, delta
    delta = _vs_clean(outcome, "appropriateness")
    assert delta.value < 0 and delta.significant, delta
