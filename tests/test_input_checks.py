"""Bad input is refused before any model loads (issue 20 items 3, 4, 8-12; issue 21's `ppeval check`)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _write_config(tmp_path: Path, tiny, *, data: str = "", suites: str = "[suites.perplexity]\nmax_items = 5\n",
                  extra: str = "", adapter: Path | None = None) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f"""
[model]
base = "{tiny.base}"
prompt_format = "plain"
device = "cpu"
dtype = "float32"
[[subjects]]
name = "a"
adapter = "{adapter or tiny.adapter}"
{data}
{suites}
[run]
cache_dir = "{tmp_path / 'cache'}"
bootstrap_resamples = 100
{extra}
""", encoding="utf-8")
    return path


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ---------------------------------------------------------------- item 3: every named data file, at load
@pytest.mark.parametrize(("content", "message"), [
    (b"", "no records (the file is empty)"),
    (b'{"text": "ok"}\n{"text": oops}\n', ":2: not valid JSON"),
    (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', ":2: not UTF-8 text"),
])
def test_a_broken_training_file_is_refused_even_when_no_selected_suite_reads_it(tmp_path, tiny, capsys,
                                                                                 content, message):
    training = tmp_path / "train.jsonl"
    training.write_bytes(content)
    config = _write_config(tmp_path, tiny, data=f'[data]\ntraining = "{training}"\n')
    code, out = _run(capsys, "run", str(config), "--suites", "perplexity", "--out", str(tmp_path / "out"))
    assert code == 2
    assert str(training) in out and message in out
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # refused before any model


def test_an_empty_canaries_file_is_refused_naming_it(tmp_path, tiny, capsys):
    canaries = tmp_path / "canaries.jsonl"
    canaries.write_text("\n")
    config = _write_config(tmp_path, tiny, data=f'[data]\ncanaries = "{canaries}"\n')
    code, out = _run(capsys, "check", str(config))
    assert code == 2 and str(canaries) in out and "no canaries" in out


# ---------------------------------------------------------------- item 9: input at fault exits 2, up front
def test_a_data_file_whose_every_text_is_empty_is_refused(tmp_path, tiny, capsys):
    holdout = tmp_path / "holdout.jsonl"
    holdout.write_text('{"text": ""}\n{"text": "  "}\n')
    config = _write_config(tmp_path, tiny, data=f'[data]\nholdout = "{holdout}"\n')
    code, out = _run(capsys, "run", str(config), "--out", str(tmp_path / "out"))
    assert code == 2 and str(holdout) in out and "every record's text is empty" in out


def test_cuda_device_on_a_machine_without_cuda_exits_2(tmp_path, tiny, capsys, monkeypatch):
    from harness import preflight

    monkeypatch.setattr(preflight, "device_available", lambda device: device == "cpu")
    config = _write_config(tmp_path, tiny)
    config.write_text(config.read_text().replace('device = "cpu"', 'device = "cuda"'))
    code, out = _run(capsys, "run", str(config), "--out", str(tmp_path / "out"))
    assert code == 2 and "`model.device` = 'cuda'" in out and "no CUDA device" in out
    assert not (tmp_path / "cache").exists()


def test_the_device_probe_reports_a_missing_cuda_device_index():
    from harness.preflight import device_available

    assert device_available("cpu") and device_available("auto")
    assert not device_available("cuda:9999")


@pytest.mark.parametrize("flag", ["--summary", "--junit"])
def test_gate_outputs_at_a_directory_or_under_a_missing_one_are_refused_before_the_run(tmp_path, tiny, capsys, flag):
    config = _write_config(tmp_path, tiny)
    code, out = _run(capsys, "run", str(config), "--out", str(tmp_path / "o1"), flag, str(tmp_path))
    assert code == 2 and "is a directory" in out
    code, out = _run(capsys, "run", str(config), "--out", str(tmp_path / "o2"), flag, str(tmp_path / "no" / "x"))
    assert code == 2 and "does not exist" in out
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- item 8: --limit
@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_limit_accepts_only_positive_whole_numbers(tmp_path, tiny, capsys, value):
    config = _write_config(tmp_path, tiny)
    with pytest.raises(SystemExit) as info:
        main(["run", str(config), "--limit", value])
    assert info.value.code == 2
    assert "at least 1" in capsys.readouterr().err


# ---------------------------------------------------------------- item 10: the right line for bad bytes
def test_non_utf8_bytes_are_reported_on_their_own_line(tmp_path):
    from harness.data import read_text_records
    from harness.errors import InputError

    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"text": f"line {i} " + "x" * 40}).encode() for i in range(1, 600)]
    lines[499] = b'{"text": "caf\xe9"}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError, match=r"d\.jsonl:500: not UTF-8"):
        read_text_records(path)


# ---------------------------------------------------------------- item 12: misspelt suites, sources, --suites
def test_a_misspelt_suite_table_is_refused_even_with_suites_given(tmp_path, tiny, capsys):
    config = _write_config(tmp_path, tiny, suites="[suites.perplexty]\nmax_items = 5\n")
    code, out = _run(capsys, "run", str(config), "--suites", "perplexity", "--out", str(tmp_path / "out"))
    assert code == 2 and "unknown suite `suites.perplexty`" in out and 'did you mean "perplexity"' in out
    assert str(config) in out


def test_a_suite_option_error_names_the_config_file(tmp_path, tiny, capsys):
    config = _write_config(tmp_path, tiny, suites="[suites.perplexity]\nmax_itms = 5\n")
    code, out = _run(capsys, "run", str(config), "--out", str(tmp_path / "out"))
    assert code == 2 and f"{config}: unknown key `suites.perplexity.max_itms`" in out
    assert "config: " not in out.replace(f"{config}: ", "")


def test_a_gate_on_a_suite_left_out_by_suites_says_so(tmp_path, tiny, capsys):
    config = _write_config(tmp_path, tiny, suites="[suites.perplexity]\nmax_items = 5\n[suites.memorization]\n",
                           extra='[[policy.gate]]\nmetric = "memorization.mia_auc"\nmax = 0.6\n')
    code, out = _run(capsys, "check", str(config), "--suites", "perplexity")
    assert code == 2 and "'memorization' is not selected" in out and "--suites" in out


# ---------------------------------------------------------------- item 4: bad adapter weights, before loading
def _rewrite_header(path: Path, edit) -> None:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    body = raw[8 + length:]
    new = json.dumps(edit(header)).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + body)


def _first_tensor(header: dict) -> str:
    return next(k for k in header if k != "__metadata__")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda h: [h], "its header is a JSON list"),
    (lambda h: {**h, _first_tensor(h): {k: v for k, v in h[_first_tensor(h)].items() if k != "dtype"}},
     "field `dtype` is missing"),
    (lambda h: {**h, _first_tensor(h): {**h[_first_tensor(h)], "data_offsets": [0, 4]}},
     "field `data_offsets` spans 4 bytes"),
])
def test_a_malformed_adapter_header_exits_2_naming_subject_file_and_field(tmp_path, tiny, capsys, edit, message):
    adapter = tmp_path / "ad"
    shutil.copytree(tiny.adapter, adapter)
    weights = adapter / "adapter_model.safetensors"
    _rewrite_header(weights, edit)
    config = _write_config(tmp_path, tiny, adapter=adapter)
    code, out = _run(capsys, "run", str(config), "--out", str(tmp_path / "out"))
    assert code == 2, out
    assert 'subject "a"' in out and str(weights) in out and message in out
    assert not (tmp_path / "cache").exists()


def test_target_modules_the_base_lacks_exit_2_naming_the_field(tmp_path, tiny, capsys):
    adapter = tmp_path / "ad"
    shutil.copytree(tiny.adapter, adapter)
    config_file = adapter / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text())
    adapter_config["target_modules"] = ["q_proj", "attn_qkv"]
    config_file.write_text(json.dumps(adapter_config))
    code, out = _run(capsys, "run", str(_write_config(tmp_path, tiny, adapter=adapter)), "--out", str(tmp_path / "o"))
    assert code == 2, out
    assert 'subject "a"' in out and str(config_file) in out and "`target_modules`" in out and "'attn_qkv'" in out


def test_an_adapter_whose_recorded_base_was_copied_elsewhere_is_accepted(tmp_path, tiny):
    from harness.config import load_config
    from harness.subjects import validate_subjects

    moved = tmp_path / "moved-base"
    shutil.copytree(tiny.base, moved)  # the adapter still names tiny.base, which exists: a copied cache
    config = _write_config(tmp_path, tiny)
    config.write_text(config.read_text().replace(f'base = "{tiny.base}"', f'base = "{moved}"'))
    assert [kind for _, kind, _ in validate_subjects(load_config(config))] == ["base", "adapter"]


def test_an_adapter_whose_recorded_base_is_another_model_is_still_refused(tmp_path, tiny, capsys):
    adapter = tmp_path / "ad"
    shutil.copytree(tiny.adapter, adapter)
    config_file = adapter / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text())
    adapter_config["base_model_name_or_path"] = str(tiny.other_base)
    config_file.write_text(json.dumps(adapter_config))
    code, out = _run(capsys, "check", str(_write_config(tmp_path, tiny, adapter=adapter)))
    assert code == 2 and "adapter was made for base" in out


# ---------------------------------------------------------------- items 5 and 11: the result cache
@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_result_cache_is_private_to_its_owner(tmp_path):
    from harness.cache import ResultCache

    directory = tmp_path / "cache"
    directory.mkdir(mode=0o755)
    cache = ResultCache(directory)
    cache.close()
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (directory / "results.sqlite").stat().st_mode & 0o777 == 0o600


def test_a_corrupt_cache_fails_naming_the_file_and_what_to_do(tmp_path, tiny, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "results.sqlite").write_bytes(b"this is not a database" * 100)
    code, out = _run(capsys, "run", str(_write_config(tmp_path, tiny)), "--out", str(tmp_path / "out"))
    assert code == 3
    assert str(cache / "results.sqlite") in out and "delete it" in out and "--cache-dir" in out
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directory left


def test_a_full_cache_disk_fails_naming_the_file_and_what_to_do(tmp_path):
    from harness.cache import ResultCache
    from harness.errors import RunFailure
    from harness.requests import GenerateResponse

    cache = ResultCache(tmp_path / "cache")
    cache._db.execute("PRAGMA max_page_count = 3")  # SQLite then answers SQLITE_FULL, as on a full disk
    items = [(f"k{i}", GenerateResponse(text="x" * 2000, n_tokens=1)) for i in range(50)]
    with pytest.raises(RunFailure) as info:
        cache.put_many("s", "e", items)
    assert str(cache.path) in str(info.value) and "full" in str(info.value) and "--cache-dir" in str(info.value)
    cache.close()


def test_cache_dir_flag_moves_the_cache(tmp_path, tiny):
    elsewhere = tmp_path / "elsewhere"
    assert main(["run", str(_write_config(tmp_path, tiny)), "--out", str(tmp_path / "out"),
                 "--cache-dir", str(elsewhere)]) == 0
    with sqlite3.connect(elsewhere / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] > 0
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- issue 21: ppeval check
_CHECK_WITHOUT_TORCH = ("import sys\nfrom harness.cli import main\nrc = main(['check', sys.argv[1]])\n"
                        "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)")


def _check_in_a_fresh_process(config: Path) -> subprocess.CompletedProcess[str]:
    """`ppeval check CONFIG` in a new interpreter that fails if torch was imported."""
    return subprocess.run([sys.executable, "-c", _CHECK_WITHOUT_TORCH, str(config)], capture_output=True, text=True,
                          cwd=ROOT)


def test_check_passes_a_good_config_and_loads_no_torch(tmp_path, tiny):
    gates = ('[[policy.gate]]\nmetric = "perplexity.mean_nll"\nmax = 9\n'
             '[[policy.gate]]\nmetric = "bias.demographic_parity_difference"\nmax = 0.1\n')
    done = _check_in_a_fresh_process(_write_config(tmp_path, tiny, suites="", extra=gates))  # every suite selected
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ready to run" in done.stdout and "fits the base" in done.stdout and "overpersonalization" in done.stdout
    assert not (tmp_path / "cache").exists()


def test_check_catches_a_gate_typo_and_a_broken_data_file_without_torch(tmp_path, tiny):
    done = _check_in_a_fresh_process(
        _write_config(tmp_path, tiny, extra='[[policy.gate]]\nmetric = "perplexity.mean_nl"\nmax = 9\n'))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "perplexity.mean_nl" in done.stderr and 'did you mean "perplexity.mean_nll"' in done.stderr
    holdout = tmp_path / "h.jsonl"
    holdout.write_text('{"text": "ok"}\n{"text": 1}\n')
    done = _check_in_a_fresh_process(_write_config(tmp_path, tiny, data=f'[data]\nholdout = "{holdout}"\n'))
    assert done.returncode == 2 and f"{holdout}:2:" in done.stderr


def test_version_flag_prints_the_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("ppeval ")


@pytest.mark.parametrize(("reps", "bad"), [("0,2", "'0'"), ("1,abc", "'abc'"), ("1,,2", "''")])
def test_canaries_make_names_the_wrong_repetition_value(tmp_path, capsys, reps, bad):
    code, out = _run(capsys, "canaries", "make", "--template", "my code is {secret}", "--reps", reps,
                     "--out", str(tmp_path / "c.jsonl"))
    assert code == 2 and f"{bad} is not a whole number" in out
    assert not (tmp_path / "c.jsonl").exists()


def test_a_full_disk_while_writing_the_run_directory_exits_3_naming_the_path_and_leaves_nothing(tmp_path, tiny,
                                                                                                capsys, monkeypatch):
    import errno

    from harness import runner

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner, "atomic_write_text", full)
    code, out = _run(capsys, "run", str(_write_config(tmp_path, tiny)), "--out", str(tmp_path / "out"))
    assert code == 3
    assert "no space left" in out and "scorecard.md" in out and "--out DIR" in out
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_check_refuses_a_typo_in_a_suites_options_without_loading_anything(tmp_path, tiny, capsys):
    config = _write_config(tmp_path, tiny, suites="[suites.perplexity]\nmax_itemz = 5\n")
    code, out = _run(capsys, "check", str(config))
    assert code == 2 and "suites.perplexity.max_itemz" in out
    assert not (tmp_path / "cache").exists()
    good = _write_config(tmp_path, tiny)
    code, out = _run(capsys, "check", str(good))
    assert code == 0 and "options valid" in out
