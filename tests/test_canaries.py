"""Canary tooling: secret spaces, canary making, the JSONL format, insertion into training data."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from harness.canaries import (
    Canary,
    SecretSpace,
    insert_canaries,
    make_canaries,
    read_canaries,
    write_canaries,
)
from harness.errors import InputError

TEMPLATE = "my account recovery code is {secret}."


def test_space_of_at_least_2_to_the_20_is_enforced() -> None:
    assert SecretSpace().size >= 2**20
    assert SecretSpace("0123456789abcdef", 5).size == 16**5
    with pytest.raises(ValueError, match="2\\*\\*20"):
        SecretSpace("0123456789", 6)  # 10**6 < 2**20
    with pytest.raises(ValueError, match="repeated"):
        SecretSpace("00123456789", 7)
    with pytest.raises(ValueError):
        SecretSpace("", 30)


def test_space_samples_distinct_secrets_outside_exclude() -> None:
    space = SecretSpace()
    exclude = set(space.sample(random.Random(1), 50))
    secrets = space.sample(random.Random(1), 2000, exclude)
    assert len(set(secrets)) == 2000
    assert not exclude & set(secrets)
    assert all(len(s) == space.length and set(s) <= set(space.alphabet) for s in secrets)
    assert space.sample(random.Random(7), 10) == space.sample(random.Random(7), 10)


def test_make_canaries_buckets_twins_and_distinct_secrets() -> None:
    canaries = make_canaries(TEMPLATE, n_per_bucket=4, repetitions=(1, 2, 4, 8, 16), seed=3)
    inserted = [c for c in canaries if c.inserted]
    twins = [c for c in canaries if not c.inserted]
    assert Counter(c.repetitions for c in inserted) == {1: 4, 2: 4, 4: 4, 8: 4, 16: 4}
    assert len(twins) == len(inserted) and all(c.repetitions == 0 for c in twins)
    assert len({c.secret for c in canaries}) == len(canaries)
    assert len({c.canary_id for c in canaries}) == len(canaries)
    assert make_canaries(TEMPLATE, n_per_bucket=4, seed=3) == canaries
    assert make_canaries(TEMPLATE, n_per_bucket=4, seed=4) != canaries
    assert len(make_canaries(TEMPLATE, n_per_bucket=2, repetitions=(1, 4), n_twins=0)) == 4


def test_canary_text_parts() -> None:
    canary = make_canaries(TEMPLATE, n_per_bucket=1, repetitions=(1,))[0]
    assert canary.prefix == "my account recovery code is "
    assert canary.suffix == "."
    assert canary.text == f"my account recovery code is {canary.secret}."
    assert canary.inserted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"template": "no placeholder here"}, "exactly once"),
        ({"template": "{secret} and {secret}"}, "exactly once"),
        ({"repetitions": (1, 0)}, ">= 1"),
        ({"repetitions": ()}, "at least one"),
        ({"repetitions": (2, 2)}, "distinct"),
        ({"n_per_bucket": 0}, "n_per_bucket"),
        ({"n_twins": -1}, "n_twins"),
    ],
)
def test_make_canaries_rejects_bad_input(kwargs: dict, message: str) -> None:
    args = {"template": TEMPLATE, **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        make_canaries(args.pop("template"), **args)
    assert isinstance(info.value, InputError)  # the CLI maps it to exit status 2


def test_write_read_round_trip(tmp_path) -> None:
    canaries = make_canaries(TEMPLATE, n_per_bucket=2, space=SecretSpace("abcdefghij", 8), seed=9)
    path = tmp_path / "sub" / "canaries.jsonl"
    write_canaries(path, canaries)
    assert read_canaries(path) == canaries
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {
        "canary_id", "template", "prefix", "secret", "suffix", "text", "repetitions", "inserted", "space",
    }  # fmt: skip
    assert first["space"] == {"alphabet": "abcdefghij", "length": 8}
    assert [p.name for p in path.parent.iterdir()] == ["canaries.jsonl"]  # no temporary file left


def test_write_is_atomic_when_serialising_fails(tmp_path) -> None:
    path = tmp_path / "canaries.jsonl"
    write_canaries(path, make_canaries(TEMPLATE, n_per_bucket=1))
    before = path.read_text()

    class Broken(Canary):
        def to_json(self) -> dict:
            raise RuntimeError("boom")

    good = make_canaries(TEMPLATE, n_per_bucket=1)[0]
    broken = Broken(good.canary_id, good.template, good.secret, good.repetitions, good.space)
    with pytest.raises(RuntimeError):
        write_canaries(path, [good, broken])
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["canaries.jsonl"]


def _lines(tmp_path, mutate) -> str:
    """A canaries file whose third line is changed by `mutate` (a function of the decoded object)."""
    path = tmp_path / "canaries.jsonl"
    write_canaries(path, make_canaries(TEMPLATE, n_per_bucket=2))
    lines = path.read_text().splitlines()
    obj = json.loads(lines[2])
    lines[2] = mutate(obj) if callable(mutate) else mutate
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: json.dumps({k: v for k, v in o.items() if k != "secret"}), "secret"),
        (lambda o: json.dumps({**o, "secret": "12ab"}), "secret"),
        (lambda o: json.dumps({**o, "repetitions": "4"}), "repetitions"),
        (lambda o: json.dumps({**o, "repetitions": -1}), "repetitions"),
        (lambda o: json.dumps({**o, "template": "no placeholder"}), "template"),
        (lambda o: json.dumps({**o, "space": {"alphabet": "01", "length": 3}}), "space"),
        (lambda o: json.dumps({**o, "text": "something else"}), "text"),
        (lambda o: json.dumps({**o, "canary_id": "canary-r01-000"}), "canary_id"),  # a duplicate
    ],
)
def test_bad_line_names_file_line_and_field(tmp_path, mutate, field: str) -> None:
    path = _lines(tmp_path, mutate)
    with pytest.raises(ValueError) as info:
        read_canaries(path)
    message = str(info.value)
    assert path in message and "line 3" in message and repr(field) in message


def test_bad_json_names_the_line(tmp_path) -> None:
    path = _lines(tmp_path, "{not json")
    with pytest.raises(ValueError, match="line 3: not valid JSON"):
        read_canaries(path)


def test_insert_counts_equal_repetitions_and_twins_never_inserted() -> None:
    canaries = make_canaries(TEMPLATE, n_per_bucket=3, seed=1)
    records = [{"text": f"record {i}"} for i in range(100)]
    out = insert_canaries(records, canaries, seed=5)
    counts = Counter(r["text"] for r in out)
    for canary in canaries:
        assert counts[canary.text] == canary.repetitions
    assert len(out) == len(records) + sum(c.repetitions for c in canaries)
    assert [r for r in out if r["text"].startswith("record")] == records  # order of the data kept
    assert records == [{"text": f"record {i}"} for i in range(100)]  # input untouched
    assert insert_canaries(records, canaries, seed=5) == out
    assert insert_canaries(records, canaries, seed=6) != out


def test_insert_spreads_canaries_through_the_data() -> None:
    canaries = make_canaries(TEMPLATE, n_per_bucket=2, repetitions=(16,), n_twins=0)
    out = insert_canaries([{"text": f"r{i}"} for i in range(200)], canaries, seed=0)
    positions = [i for i, r in enumerate(out) if r["text"] in {c.text for c in canaries}]
    assert positions[0] < len(out) // 4 and positions[-1] > 3 * len(out) // 4
