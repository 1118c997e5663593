"""Bad configs and bad subjects are refused with exit 2 and a message naming the file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_config
from harness.errors import InputError
from harness.subjects import content_hash, resolve_subjects


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _config(tmp_path: Path, tiny, extra: str = "", adapter: Path | None = None) -> Path:
    adapter = adapter or tiny.adapter
    return _write(tmp_path / "run.toml", f"""
[model]
base = "{tiny.base}"
prompt_format = "plain"
[[subjects]]
name = "a"
adapter = "{adapter}"
{extra}
""")


def _exit_and_message(capsys, path: Path) -> tuple[int, str]:
    code = main(["run", str(path)])
    return code, capsys.readouterr().err


def test_valid_config_loads_with_absolute_paths(tmp_path, tiny):
    config = load_config(_config(tmp_path, tiny))
    assert config.model.base == tiny.base
    assert config.subjects[0].adapter == tiny.adapter


def test_relative_paths_resolve_against_the_config_directory(tmp_path, tiny):
    shutil.copytree(tiny.base, tmp_path / "models" / "base")
    path = _write(tmp_path / "run.toml", '[model]\nbase = "models/base"\n')
    assert load_config(path).model.base == (tmp_path / "models" / "base").resolve()


def test_unknown_key_suggests_the_known_one(tmp_path, tiny, capsys):
    path = _config(tmp_path, tiny, "[data]\ntrainng = 'x.jsonl'\n")
    code, err = _exit_and_message(capsys, path)
    assert code == 2
    assert "unknown key `data.trainng`" in err and 'did you mean "training"' in err and str(path) in err
    assert "Traceback" not in err


def test_wrong_type_names_the_key_and_expectation(tmp_path, tiny, capsys):
    code, err = _exit_and_message(capsys, _config(tmp_path, tiny, "[run]\nseed = 'zero'\n"))
    assert code == 2 and "`run.seed`" in err and "integer" in err


def test_bad_enum_value_lists_the_choices(tmp_path, tiny, capsys):
    path = _write(tmp_path / "run.toml", f'[model]\nbase = "{tiny.base}"\ndtype = "fp8"\n')
    code, err = _exit_and_message(capsys, path)
    assert code == 2 and "`model.dtype`" in err and "bfloat16" in err


def test_missing_required_key(tmp_path, capsys):
    code, err = _exit_and_message(capsys, _write(tmp_path / "run.toml", "[model]\ndtype = 'auto'\n"))
    assert code == 2 and "missing required key `model.base`" in err


def test_toml_syntax_error_gives_line(tmp_path, capsys):
    code, err = _exit_and_message(capsys, _write(tmp_path / "run.toml", "[model\nbase = 1\n"))
    assert code == 2 and "TOML syntax error" in err and "line 1" in err


def test_missing_config_file(tmp_path, capsys):
    code, err = _exit_and_message(capsys, tmp_path / "nope.toml")
    assert code == 2 and "config file not found" in err


def test_missing_adapter_directory(tmp_path, tiny, capsys):
    code, err = _exit_and_message(capsys, _config(tmp_path, tiny, adapter=tmp_path / "gone"))
    assert code == 2 and "subjects[0].adapter" in err and "does not exist" in err


def test_data_path_that_is_a_directory(tmp_path, tiny, capsys):
    code, err = _exit_and_message(capsys, _config(tmp_path, tiny, f"[data]\ntraining = '{tmp_path}'\n"))
    assert code == 2 and "`data.training`" in err and "expected a file" in err


def test_subject_with_both_adapter_and_model_is_refused(tmp_path, tiny, capsys):
    extra = f'model = "{tiny.full}"'
    path = _config(tmp_path, tiny, extra)
    code, err = _exit_and_message(capsys, path)
    assert code == 2 and "exactly one of `adapter`" in err


def test_adapter_made_for_another_base_is_refused_by_name(tmp_path, tiny, capsys):
    code, err = _exit_and_message(capsys, _config(tmp_path, tiny, adapter=tiny.other_adapter))
    assert code == 2 and 'subject "a"' in err and "made for base" in err


def test_adapter_for_another_architecture_is_refused_by_shape_even_when_name_is_overridden(tmp_path, tiny):
    path = _config(tmp_path, tiny, "ignore_base_name = true", adapter=tiny.other_adapter)
    with pytest.raises(InputError, match=r'subject "a".*shape.*another base'):
        resolve_subjects(load_config(path))


def test_adapter_targeting_missing_modules_is_refused(tmp_path, tiny):
    import json

    from safetensors.numpy import load_file, save_file

    bad = tmp_path / "bad-adapter"
    shutil.copytree(tiny.adapter, bad)
    tensors = load_file(bad / "adapter_model.safetensors")
    renamed = {k.replace("q_proj", "qkv_proj"): v for k, v in tensors.items()}
    save_file(renamed, bad / "adapter_model.safetensors")
    cfg = json.loads((bad / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"qkv_proj.*does not have"):
        resolve_subjects(load_config(_config(tmp_path, tiny, adapter=bad)))


def test_truncated_safetensors_is_refused(tmp_path, tiny):
    bad = tmp_path / "truncated"
    shutil.copytree(tiny.adapter, bad)
    weights = bad / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated safetensors"):
        resolve_subjects(load_config(_config(tmp_path, tiny, adapter=bad)))


def test_pickle_only_base_is_refused_without_allow_pickle(tmp_path, tiny):
    base = tmp_path / "pickle-base"
    shutil.copytree(tiny.base, base)
    (base / "model.safetensors").rename(base / "pytorch_model.bin")
    path = _write(tmp_path / "run.toml", f'[model]\nbase = "{base}"\n')
    with pytest.raises(InputError, match="pickle"):
        resolve_subjects(load_config(path))


def test_content_hash_changes_with_the_weights(tmp_path, tiny):
    copy = tmp_path / "copy"
    shutil.copytree(tiny.adapter, copy)
    assert content_hash(copy) == content_hash(tiny.adapter)
    weights = copy / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert content_hash(copy) != content_hash(tiny.adapter)
