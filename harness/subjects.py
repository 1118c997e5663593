"""Subjects (the base and its fine-tunes): content hashes and validation against the base, without torch.

Validation reads safetensors headers (names, dtypes, shapes) only, so a 70B base is checked in
milliseconds and a broken adapter is refused before any weights are loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.config import RunConfig, SubjectConfig
from harness.errors import InputError, did_you_mean

SubjectKind = Literal["base", "adapter", "full"]
_HASHED_SUFFIXES = (".safetensors", ".json", ".bin", ".model", ".txt")


@dataclass(frozen=True)
class Subject:
    """One model to evaluate, identified by the hash of its weight and config files."""

    name: str
    kind: SubjectKind
    path: Path
    sha256: str


def content_hash(directory: Path) -> str:
    """sha256 over the relative names and bytes of a model directory's weight and config files."""
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in _HASHED_SUFFIXES):
        digest.update(str(file.relative_to(directory)).encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
                "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}


def _tensor_entry(path: Path, name: str, info: object) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry; a malformed entry is an `InputError` naming its field."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict):
        raise InputError(f"{where}: expected an object with `dtype`, `shape`, `data_offsets`")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        raise InputError(f"{where}: field `dtype` is missing or not a string (got {dtype!r})")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise InputError(f"{where}: field `shape` is not a list of non-negative integers (got {shape!r})")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise InputError(f"{where}: field `data_offsets` is not [begin, end] with 0 <= begin <= end (got {offsets!r})")
    if dtype in _DTYPE_BYTES:
        need = _DTYPE_BYTES[dtype]
        for dim in shape:
            need *= dim
        if offsets[1] - offsets[0] != need:
            raise InputError(f"{where}: field `data_offsets` spans {offsets[1] - offsets[0]} bytes, but shape "
                             f"{shape} of {dtype} needs {need}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from a safetensors header; refuses truncated or corrupt files, and entries
    whose `dtype`, `shape` or `data_offsets` are missing or do not fit together, naming the tensor and field."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > size - 8:
                raise ValueError(f"header length {length} exceeds the file size {size}")
            header = json.loads(handle.read(length))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: not a valid safetensors file (its header is a JSON {type(header).__name__}; "
                         "expected an object of tensor entries)")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, _, stop = _tensor_entry(path, name, info)
        tensors[name] = (dtype, shape)
        end = max(end, stop)
    if 8 + length + end > size:
        raise InputError(f"{path}: truncated safetensors file ({size} bytes, tensors need {8 + length + end})")
    return tensors


def _weight_files(directory: Path, *, allow_pickle: bool, what: str, stem: str = "model") -> list[Path]:
    files = sorted(directory.glob(f"{stem}*.safetensors")) or sorted(directory.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(directory.glob("*.bin")) + sorted(directory.glob("*.pt"))
    if pickles and not allow_pickle:
        raise InputError(
            f"{directory}: {what} has only pickle weights ({pickles[0].name}); pickle files can run code when "
            "loaded. Convert them to safetensors, or set `model.allow_pickle = true` if you trust them."
        )
    if not pickles:
        raise InputError(f"{directory}: no weights found for {what} (expected {stem}*.safetensors)")
    return pickles


def base_tensors(directory: Path, *, allow_pickle: bool = False) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Names and shapes of the base's tensors (empty when only trusted pickle weights exist)."""
    if not (directory / "config.json").is_file():
        raise InputError(f"{directory}: no config.json; expected a model directory in Hugging Face format")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in _weight_files(directory, allow_pickle=allow_pickle, what="the base model"):
        if file.suffix == ".safetensors":
            tensors.update(read_safetensors_header(file))
    return tensors


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read JSON ({exc})") from None


def _model_identity(directory: Path) -> tuple[object, ...] | None:
    """What identifies a model apart from where it lies: its config (less `_name_or_path`) and its safetensors
    files' names, sizes and tensor headers. None when the directory is not a readable model."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        files = sorted(directory.glob("*.safetensors"))
        weights = tuple((f.name, f.stat().st_size, tuple(sorted(read_safetensors_header(f).items()))) for f in files)
    except (OSError, ValueError, InputError):
        return None
    if not isinstance(config, dict) or not weights:
        return None
    config.pop("_name_or_path", None)
    return json.dumps(config, sort_keys=True), weights


def _base_names_match(declared: str, base_dir: Path) -> bool:
    """The adapter's `base_model_name_or_path` names this base: the same directory, a directory holding the same
    model (a copied or moved cache), or the same name."""
    if not declared:
        return True
    declared_path = Path(declared).expanduser()
    if declared_path.is_absolute() and declared_path.exists():
        if declared_path.resolve() == base_dir.resolve():
            return True
        identity = _model_identity(declared_path)
        return identity is not None and identity == _model_identity(base_dir)
    recorded = _read_json(base_dir / "config.json").get("_name_or_path", "")
    return declared_path.name == base_dir.name or declared in {str(base_dir), recorded}


def _check_target_modules(where: str, config_file: Path, targets: object,
                          base: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Every `target_modules` entry matches some module of the base, as PEFT matches them (a name equal to
    the module's dotted path or to its last parts; a string is a regular expression on the full path)."""
    modules = {name.removesuffix(".weight") for name in base if name.endswith(".weight")}
    if targets is None or targets == "all-linear":
        return
    if isinstance(targets, str):
        if not any(re.fullmatch(targets, m) for m in modules):
            raise InputError(f"{where}: {config_file}: field `target_modules` = {targets!r} matches no module "
                             "of the base model")
        return
    if not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise InputError(f"{where}: {config_file}: field `target_modules`: expected a list of module names or a "
                         f"regular expression (got {targets!r})")
    for target in targets:
        if not any(m == target or m.endswith(f".{target}") for m in modules):
            suffixes = sorted({m.rsplit(".", 1)[-1] for m in modules})
            raise InputError(f"{where}: {config_file}: field `target_modules` names {target!r}, which the base "
                             f"model does not have{did_you_mean(target, suffixes)}; the adapter was made for another "
                             "architecture")


def validate_adapter(spec: SubjectConfig, base_dir: Path, base: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Refuse an adapter whose base, target modules or shapes do not fit the base model."""
    assert spec.adapter is not None
    directory = spec.adapter
    where = f'subject "{spec.name}" ({directory})'
    config_file = directory / "adapter_config.json"
    if not config_file.is_file():
        raise InputError(f"{where}: no adapter_config.json; expected a PEFT adapter directory")
    adapter_config = _read_json(config_file)
    declared = str(adapter_config.get("base_model_name_or_path") or "")
    if not spec.ignore_base_name and not _base_names_match(declared, base_dir):
        raise InputError(
            f"{where}: adapter was made for base {declared!r}, not {str(base_dir)!r}. If it is the same model "
            "under another name, set `ignore_base_name = true` for this subject."
        )
    files = _weight_files(directory, allow_pickle=False, what=f'adapter "{spec.name}"', stem="adapter_model")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in files:
        try:
            tensors.update(read_safetensors_header(file))
        except InputError as exc:
            raise InputError(f'subject "{spec.name}": {exc}') from None
    if not base:
        return
    _check_target_modules(where, config_file, adapter_config.get("target_modules"), base)
    for name, (_, shape) in tensors.items():
        for marker, dim in ((".lora_A.", 1), (".lora_B.", 0)):
            if marker not in name:
                continue
            module = name.split(marker)[0].removeprefix("base_model.model.")
            target = f"{module}.weight"
            if target not in base:
                raise InputError(
                    f"{where}: targets module {module!r}, which the base model does not have "
                    f"(adapter tensor {name!r}); the adapter was made for another architecture"
                )
            base_shape = base[target][1]
            expected = base_shape[1] if dim == 1 else base_shape[0]
            got = shape[1] if dim == 1 else shape[0]
            if len(base_shape) == 2 and got != expected:
                raise InputError(
                    f"{where}: {name!r} has shape {list(shape)} but base weight {target!r} is "
                    f"{list(base_shape)}; the adapter was made for another base"
                )


def validate_full_finetune(
    spec: SubjectConfig, base_dir: Path, base: dict[str, tuple[str, tuple[int, ...]]], allow_pickle: bool
) -> None:
    """Refuse a full fine-tune whose tensor names or shapes differ from the base's."""
    assert spec.model is not None
    where = f'subject "{spec.name}" ({spec.model})'
    if not (spec.model / "config.json").is_file():
        raise InputError(f"{where}: no config.json; expected a model directory in Hugging Face format")
    if _read_json(spec.model / "config.json").get("model_type") != _read_json(base_dir / "config.json").get(
        "model_type"
    ):
        raise InputError(f"{where}: model_type differs from the base's; expected a fine-tune of the same base")
    tensors = base_tensors(spec.model, allow_pickle=allow_pickle)
    for name, (_, shape) in tensors.items():
        if base and name in base and base[name][1] != shape:
            raise InputError(f"{where}: tensor {name!r} has shape {list(shape)}, base has {list(base[name][1])}")
    missing = sorted(set(tensors) - set(base)) if base else []
    if missing:
        raise InputError(f"{where}: tensors the base does not have, e.g. {missing[0]!r}")


def validate_subjects(config: RunConfig) -> list[tuple[str, SubjectKind, Path]]:
    """Check the base and every subject against it from headers and configs alone (no weights are read, nothing
    is hashed); returns (name, kind, path) with the base first."""
    base_dir = config.model.base
    # a `server` backend needs the base's tokenizer and config.json here, not its weights: then nothing to check
    served = config.backend.kind == "server" and not any(base_dir.glob("*.safetensors")) and not any(
        base_dir.glob("*.bin"))
    base = {} if served else base_tensors(base_dir, allow_pickle=config.model.allow_pickle)
    auto_map = _read_json(base_dir / "config.json").get("auto_map")
    if auto_map and not config.model.trust_remote_code:
        raise InputError(
            f"{base_dir / 'config.json'}: `auto_map` names custom model code ({', '.join(sorted(auto_map))}) that "
            "would run on load; ppeval does not run code shipped with a model unless `model.trust_remote_code = "
            "true` (only for code you have reviewed)"
        )
    found: list[tuple[str, SubjectKind, Path]] = [("base", "base", base_dir)]
    for spec in config.subjects:
        if spec.adapter is not None:
            validate_adapter(spec, base_dir, base)
            found.append((spec.name, "adapter", spec.adapter))
        elif spec.model is not None:
            validate_full_finetune(spec, base_dir, base, config.model.allow_pickle)
            found.append((spec.name, "full", spec.model))
        # neither: a subject that a `server` backend knows by its served name only (harness.backends.server)
    return found


def resolve_subjects(config: RunConfig) -> list[Subject]:
    """Validate every subject against the base and hash them all; the base comes first."""
    return [Subject(name, kind, path, content_hash(path)) for name, kind, path in validate_subjects(config)]
