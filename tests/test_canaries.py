"""Canary tooling: secret spaces, canary making, the JSONL format, insertion into training data."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from harness.canaries import (
    Canary,
    SecretSpace,
    import_canaries,
    insert_canaries,
    make_canaries,
    read_canaries,
    write_canaries,
)
from harness.errors import InputError

TEMPLATE = "my account recovery code is {secret}."


def test_space_of_at_least_1000_is_accepted_and_one_under_2_to_the_20_is_marked_small() -> None:
    assert SecretSpace().size >= 2**20 and not SecretSpace().small
    assert SecretSpace("0123456789abcdef", 5).size == 16**5
    six_digits = SecretSpace("0123456789", 6)  # a team's PINs: 10**6 < 2**20, accepted
    assert six_digits.size == 10**6 and six_digits.small
    assert SecretSpace("0123456789", 3).size == 1000
    with pytest.raises(ValueError, match="at least 1000"):
        SecretSpace("0123456789", 2)
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


def _team_file(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_import_takes_a_teams_csv_as_it_is(tmp_path) -> None:
    path = _team_file(tmp_path, "team.csv", "secret,repetitions,canary_id\n004211,16,pin-a\n938120,1,\n"
                                              "550017,0,\n120998,0,twin-x\n")
    canaries = import_canaries(path, template="my locker code is {secret}.")
    assert [(c.canary_id, c.secret, c.repetitions) for c in canaries] == [
        ("pin-a", "004211", 16), ("canary-00003", "938120", 1), ("twin-00004", "550017", 0), ("twin-x", "120998", 0)]
    assert {c.space for c in canaries} == {SecretSpace("0123456789", 6)}  # leading zeros kept, space inferred
    assert canaries[0].text == "my locker code is 004211."
    out = tmp_path / "canaries.jsonl"
    write_canaries(out, canaries)
    assert read_canaries(out) == canaries  # the suite reads it back unchanged


def test_import_takes_per_row_prefixes_and_infers_a_hex_space(tmp_path) -> None:
    rows = [{"secret": "a0f3", "repetitions": 4, "prefix": "door code: "},
            {"secret": "09bc", "repetitions": 0, "template": "the vault code {secret} expires"}]
    path = _team_file(tmp_path, "team.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    canaries = import_canaries(path)
    assert canaries[0].template == "door code: {secret}" and canaries[1].suffix == " expires"
    assert canaries[0].space == SecretSpace("0123456789abcdef", 4)
    assert import_canaries(path, alphabet="0123456789abcdefx", length=4)[0].space.alphabet.endswith("x")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "code,repetitions\n123456,1\n", "'secret' column"),
        ("a.jsonl", '{"secret": 123456, "repetitions": 1}\n', "line 1: field 'secret'.*quote"),
        ("a.csv", "secret,repetitions\n123456,1\n654321,many\n", "line 3: field 'repetitions'"),
        ("a.csv", "secret,repetitions\n123456,1\n65432,0\n", "line 3: field 'secret'.*5 characters"),
        ("a.csv", "secret,repetitions\n123456,1\n123456,0\n", "line 3: field 'secret'.*repeats line 2"),
        ("a.csv", "secret,repetitions\n12,1\n", "at least 1000"),
        ("a.jsonl", '{"secret": "12345", "repetitions": 1, "prefix": "a ", "template": "b {secret}"}\n', "not both"),
        ("a.jsonl", "[1, 2]\n", ":1: expected a JSON object"),
        ("a.csv", "secret,repetitions\n", "no canaries"),
    ],
)
def test_import_refuses_bad_rows_naming_file_line_and_field(tmp_path, name: str, text: str, message: str) -> None:
    path = _team_file(tmp_path, name, text)
    with pytest.raises(InputError, match=message) as info:
        import_canaries(path, template="pin {secret}")
    assert str(path) in str(info.value)


def test_import_without_any_template_is_refused(tmp_path) -> None:
    path = _team_file(tmp_path, "a.csv", "secret,repetitions\n123456,1\n")
    with pytest.raises(InputError, match="no template"):
        import_canaries(path)


def test_canaries_import_cli_writes_the_file_and_exits_2_on_bad_input(tmp_path, capsys) -> None:
    from harness.cli import main

    team = _team_file(tmp_path, "team.csv", "secret,repetitions\n004211,4\n938120,0\n")
    out = tmp_path / "canaries.jsonl"
    assert main(["canaries", "import", str(team), "--prefix", "locker ", "--out", str(out)]) == 0
    assert [(c.template, c.secret, c.repetitions) for c in read_canaries(out)] == [
        ("locker {secret}", "004211", 4), ("locker {secret}", "938120", 0)]
    assert "under 2**20" in capsys.readouterr().out
    assert main(["canaries", "import", str(team), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no template" in capsys.readouterr().err


def test_canaries_make_takes_a_six_digit_space_and_refuses_one_under_1000(tmp_path, capsys) -> None:
    from harness.cli import main

    out = tmp_path / "canaries.jsonl"
    assert main(["canaries", "make", "--template", "pin {secret}", "--length", "6", "--n-per-bucket", "2",
                 "--reps", "1,4", "--out", str(out)]) == 0
    assert {c.space for c in read_canaries(out)} == {SecretSpace("0123456789", 6)}
    assert main(["canaries", "make", "--template", "pin {secret}", "--length", "2", "--out", str(out)]) == 2
    assert "at least 1000" in capsys.readouterr().err
