"""Property-based tests of the statistics, and fuzzing of the config and data loaders."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import load_config
from harness.data import read_text_records
from harness.errors import InputError
from harness.stats import Observations, estimate
from suites.memorization.attacks import auc
from suites.memorization.exposure import rank_exposure

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=60), st.integers(0, 2**31 - 1))
def test_interval_contains_the_estimate_and_is_reproducible(values, seed):
    data = np.array(values)
    first = estimate(Observations({"base": data}, higher_is_better=True), n_resamples=200, seed=seed)["base"]
    again = estimate(Observations({"base": data}, higher_is_better=True), n_resamples=200, seed=seed)["base"]
    assert first == again
    slack = 1e-9 * max(1.0, abs(first.value))
    assert first.ci_low - slack <= first.value <= first.ci_high + slack


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=40, unique=True))
def test_auc_of_a_perfect_separator_is_one_and_of_its_flip_zero(scores):
    ordered = sorted(scores)
    half = len(ordered) // 2
    labels = [0] * half + [1] * (len(ordered) - half)
    data = np.column_stack([ordered, labels])
    assert auc(data) == 1.0
    assert auc(np.column_stack([[-s for s in ordered], labels])) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=100), finite, finite)
def test_exposure_never_rises_as_the_canary_becomes_less_likely(refs, a, b):
    likely, unlikely = min(a, b), max(a, b)
    assert rank_exposure(likely, refs) >= rank_exposure(unlikely, refs)
    assert rank_exposure(likely, refs) <= math.log2(len(refs))


def _outcome_of(loader, content: bytes, name: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        try:
            loader(path)
        except InputError:
            return "refused"
    return "ok"


VALID_CONFIG = b"""[model]
base = "."
dtype = "auto"
[[subjects]]
name = "a"
adapter = "."
[suites.perplexity]
max_items = 3
[[policy.gate]]
metric = "perplexity.mean_nll"
max = 1.0
"""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_as_a_config_are_refused_cleanly(content):
    assert _outcome_of(load_config, content, "run.toml") in {"ok", "refused"}


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(VALID_CONFIG) - 1), st.binary(min_size=1, max_size=8))
def test_mutated_configs_are_accepted_or_refused_cleanly(position, junk):
    content = VALID_CONFIG[:position] + junk + VALID_CONFIG[position + len(junk):]
    assert _outcome_of(load_config, content, "run.toml") in {"ok", "refused"}


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_as_a_data_file_are_refused_cleanly(content):
    assert _outcome_of(read_text_records, content, "data.jsonl") in {"ok", "refused"}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.booleans(), finite, st.text(max_size=20),
                          st.dictionaries(st.sampled_from(["text", "messages", "role", "content"]),
                                          st.one_of(st.text(max_size=10), st.lists(st.dictionaries(
                                              st.sampled_from(["role", "content"]), st.text(max_size=5)))))),
                max_size=5))
def test_structurally_odd_json_records_are_refused_cleanly(records):
    import json

    content = "\n".join(json.dumps(r) for r in records).encode()
    assert _outcome_of(read_text_records, content, "data.jsonl") in {"ok", "refused"}
