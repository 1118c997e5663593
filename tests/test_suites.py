"""Every registered suite passes the conformance check; the perplexity suite moves the right way."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.config import parse_config
from harness.registry import get_suite, suite_names
from harness.runner import run_evaluation
from harness.suite import SuiteContext
from harness.testing import CHECKS, SuiteConformanceError, check_suite, parametrize_with_checks, suite_checks
from suites.perplexity import PerplexitySuite


@pytest.fixture(scope="module")
def data_context(tmp_path_factory) -> SuiteContext:
    """Small training, hold-out and canary files, enough for every suite's plan."""
    from harness.canaries import make_canaries, write_canaries
    from harness.config import DataConfig

    root = tmp_path_factory.mktemp("data")
    words = "order refund account password delivery lamp box late damaged call tomorrow please".split()
    rng = random.Random(0)

    def write(name: str, n: int) -> Path:
        lines = [json.dumps({"text": " ".join(rng.choice(words) for _ in range(12))}) for _ in range(n)]
        (root / name).write_text("\n".join(lines) + "\n")
        return root / name

    canaries = root / "canaries.jsonl"
    write_canaries(canaries, make_canaries("my code is {secret}", n_per_bucket=2, repetitions=(1, 4)))
    data = DataConfig(training=write("train.jsonl", 40), holdout=write("holdout.jsonl", 40), canaries=canaries)
    return SuiteContext(data=data, limit=20)


@pytest.fixture(scope="module")
def suite_runs(data_context):
    """Each registered suite's named checks, planned and scored once per suite."""
    cache: dict[str, dict[str, object]] = {}

    def get(name: str) -> dict[str, object]:
        if name not in cache:
            cache[name] = dict(suite_checks(get_suite(name), context=data_context))
        return cache[name]

    return get


@pytest.mark.parametrize(("name", "check"), [(n, c.__name__) for n in suite_names() for c in CHECKS])
def test_registered_suite_passes_each_check(name, check, suite_runs):
    suite_runs(name)[check]()


@parametrize_with_checks([PerplexitySuite], context=SuiteContext(limit=10))
def test_parametrize_with_checks_gives_one_case_per_check(suite, check):
    check()


def test_built_in_suites_come_from_the_entry_points():
    from importlib.metadata import entry_points

    registered = {ep.name for ep in entry_points(group="ppeval.suites")}
    assert set(suite_names()[:6]) <= registered  # pyproject.toml's table, as a third-party suite would be


def test_conformance_check_catches_a_suite_emitting_an_undeclared_key():
    class Sloppy(PerplexitySuite):
        name = "sloppy"

        def score(self, responses):
            outcome = super().score(responses)
            outcome.metrics["surprise_rate"] = outcome.metrics["mean_nll"]
            return outcome

    with pytest.raises(SuiteConformanceError, match=r"check_emits_only_declared_keys.*surprise_rate"):
        check_suite(Sloppy, context=SuiteContext(limit=20))


def test_conformance_check_catches_a_direction_contradicting_the_declaration():
    from harness.metrics import MetricSpec

    class Contrary(PerplexitySuite):
        name = "contrary"
        metrics = (MetricSpec("mean_nll", "x", direction="higher"), MetricSpec("perplexity", "y"))

    with pytest.raises(SuiteConformanceError, match=r"check_directions_match.*mean_nll"):
        check_suite(Contrary, context=SuiteContext(limit=20))


def test_conformance_check_catches_a_suite_with_nonzero_delta_for_an_identical_subject():
    class Broken(PerplexitySuite):
        name = "broken"

        def score(self, responses):
            outcome = super().score(responses)
            twin = outcome.metrics["mean_nll"].per_subject["twin"].copy()
            twin[:, 0] *= 1.5  # inflate the twin's NLL
            for obs in outcome.metrics.values():
                obs.per_subject["twin"] = twin  # type: ignore[index]
            return outcome

    with pytest.raises(SuiteConformanceError, match="identical to the base"):
        check_suite(Broken, context=SuiteContext(limit=20))


def test_unknown_suite_option_names_the_key(tmp_path):
    from harness.errors import InputError

    with pytest.raises(InputError, match=r"unknown key `suites.perplexity.max_itemz`.*max_items"):
        get_suite("perplexity")({"max_itemz": 3}, SuiteContext())


def test_perplexity_falls_for_a_full_finetune_trained_on_the_reference_text(tmp_path, tiny):
    """Planted case: a copy of the base trained on the reference texts has a lower, significant NLL."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = [f"order {i} arrived late and the box was damaged" for i in range(30)]
    text_file = tmp_path / "ref.jsonl"
    text_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    tok = AutoTokenizer.from_pretrained(tiny.base)
    model = AutoModelForCausalLM.from_pretrained(tiny.base)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = tok(["<s>" + t for t in texts], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    for _ in range(30):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    model.save_pretrained(tmp_path / "trained", safe_serialization=True)
    tok.save_pretrained(tmp_path / "trained")
    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "device": "cpu"},
        "subjects": [{"name": "trained", "model": str(tmp_path / "trained")}],
        "suites": {"perplexity": {"text_file": str(text_file)}},
        "run": {"cache_dir": str(tmp_path / "cache")},
    }
    card = run_evaluation(parse_config(raw, source="t", base_dir=tmp_path), out_dir=tmp_path / "run").scorecard
    delta = card.metric("trained", "perplexity.mean_nll").delta_vs_base
    assert delta.value < -0.5 and delta.significant
    assert card.metric("trained", "perplexity.perplexity").value < card.metric("base", "perplexity.perplexity").value
