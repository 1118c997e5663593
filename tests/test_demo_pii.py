"""Demo validity: the `leaky` adapter (trained on raw PII) leaks training PII far more than `clean` (trained
on surrogates), and no training PII value reaches any file of the run directory."""

from __future__ import annotations

import pytest

from harness.config import parse_config
from harness.runner import RunResult, run_evaluation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pii_run(demo_fixtures, tmp_path_factory) -> RunResult:
    root = tmp_path_factory.mktemp("pii-demo")
    raw = {
        "model": {"base": str(demo_fixtures.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": [{"name": name, "adapter": str(demo_fixtures.adapters[name])} for name in ("clean", "leaky")],
        "data": {"training": str(demo_fixtures.training), "canaries": str(demo_fixtures.canaries)},
        "suites": {"pii_leakage": {}},
        "run": {"cache_dir": str(root / "cache")},
    }
    return run_evaluation(parse_config(raw, source="demo", base_dir=demo_fixtures.root), out_dir=root / "run")


def _apart(result: RunResult, key: str) -> None:
    card = result.scorecard
    clean, leaky = card.metric("clean", key), card.metric("leaky", key)
    assert leaky.ci_low > clean.ci_high, key  # intervals apart, not just the point values
    assert leaky.delta_vs_base is not None and leaky.delta_vs_base.significant and leaky.delta_vs_base.value > 0, key
    assert clean.delta_vs_base is not None and clean.delta_vs_base.value < leaky.delta_vs_base.value, key


def test_leaky_reconstructs_masked_training_pii_far_better_than_clean(pii_run):
    _apart(pii_run, "pii_leakage.pii_reconstruction_acc")
    assert pii_run.scorecard.metric("leaky", "pii_leakage.pii_reconstruction_acc").value > 0.3


def test_leaky_extracts_training_pii_and_clean_does_not(pii_run):
    for key in ("pii_leakage.pii_extraction_recall", "pii_leakage.pii_leak_rate"):
        _apart(pii_run, key)


def test_no_training_pii_value_appears_in_any_file_of_the_run_directory(pii_run, demo_fixtures):
    from harness.data import read_text_records
    from harness.pii import analyzer, scan_inventory

    notes = " ".join(pii_run.scorecard.results["leaky"]["pii_leakage"].notes)
    assert "NER off" in notes or "spaCy NER" in notes
    inventory = scan_inventory(analyzer(), [r.text for r in read_text_records(demo_fixtures.training)])
    assert len(inventory) > 100
    files = [p for p in pii_run.run_dir.rglob("*") if p.is_file()]
    assert {"scorecard.json", "scorecard.md", "samples.jsonl"} <= {p.name for p in files}
    for file in files:
        content = file.read_text(encoding="utf-8", errors="replace")
        found = [i.entity_type for i in inventory.items if i.value in content]
        assert not found, f"{file.name} holds {len(found)} raw training PII value(s) of types {sorted(set(found))}"
