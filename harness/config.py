"""The TOML run config: pydantic models, loading with clear errors, and writing the resolved copy."""

from __future__ import annotations

import hashlib
import re
import sys
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import InputError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: The file the current run config came from, so that suite-option errors (`harness.suite.parse_options`) name it.
CONFIG_SOURCE: ContextVar[str] = ContextVar("ppeval_config_source", default="config")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The base model and how to run it."""

    base: Path
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    prompt_format: Literal["chat", "plain"] = "chat"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    max_batch_tokens: int = Field(default=8192, ge=64)
    # a base too big for one device: accelerate places its layers ("auto", "balanced", or module -> device)
    device_map: str | dict[str, str | int] | None = None
    max_memory: dict[str, str] | None = None  # per device, e.g. {"0" = "70GiB", "1" = "70GiB", "cpu" = "200GiB"}
    offload_dir: Path | None = None  # where accelerate may offload what fits nowhere else
    static_cache: bool | None = None  # greedy generation with a static, compiled KV cache (default: on CUDA)

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("expected auto, cpu, mps, cuda or cuda:N")
        return value


class SubjectConfig(_Strict):
    """One fine-tune to evaluate: a PEFT adapter directory or a full fine-tune of the base."""

    name: str
    adapter: Path | None = None
    model: Path | None = None
    tags: dict[str, str] = Field(default_factory=dict)  # e.g. strategy = "lora-r16", privacy = "dp-eps8"
    ignore_base_name: bool = False  # accept an adapter whose base_model_name_or_path names another base
    served_model: str | None = None  # [backend] server: the name it is served under (default: `name`)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")  # server: digest of the served adapter

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if value == "base":
            raise ValueError('"base" is reserved for the base model')
        if not _NAME.match(value):
            raise ValueError("expected letters, digits, '_', '-', '.' (at most 64)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SubjectConfig:
        if self.adapter is not None and self.model is not None:
            raise ValueError("expected exactly one of `adapter` (a PEFT directory) or `model` (a full fine-tune)")
        return self


class DataConfig(_Strict):
    """What the fine-tunes were trained on, an IID hold-out, and the canaries inserted into training."""

    training: Path | None = None
    holdout: Path | None = None
    canaries: Path | None = None


class GateConfig(_Strict):
    """One policy gate on `<suite>.<metric key>`: absolute bounds and/or bounds on the delta vs base."""

    metric: str
    min: float | None = None
    max: float | None = None
    min_delta_vs_base: float | None = None
    max_delta_vs_base: float | None = None
    subjects: list[str] = Field(default_factory=lambda: ["*"])  # globs; "*" means every non-base subject
    severity: Literal["error", "warn"] = "error"  # warn: reported, never fails the run
    only_significant: bool = False  # fail only when the whole 95% interval is past the bound
    # a metric without a value for a subject (undefined, e.g. a ratio 0/0, or not computed): fail, pass, or warn
    undefined: Literal["fail", "pass", "warn"] = "fail"

    @model_validator(mode="after")
    def _has_bound(self) -> GateConfig:
        if all(v is None for v in (self.min, self.max, self.min_delta_vs_base, self.max_delta_vs_base)):
            raise ValueError("a gate needs at least one of min, max, min_delta_vs_base, max_delta_vs_base")
        return self


class PolicyConfig(_Strict):
    gate: list[GateConfig] = Field(default_factory=list)


class RunOptions(_Strict):
    """Run-wide settings: seed, bootstrap resamples, cache location."""

    seed: int = 0
    bootstrap_resamples: int = Field(default=1000, ge=100)
    cache_dir: Path | None = None
    limit: int | None = Field(default=None, ge=1)  # at most N items per suite (`--limit`, recorded by the run)


class ExecutionConfig(_Strict):
    """Where requests are answered: this process, or Ray workers (`pip install 'ppeval[ray]'`)."""

    mode: Literal["local", "ray"] = "local"
    workers: int = Field(default=1, ge=1)  # Ray tasks, one engine (and one GPU where there are GPUs) each
    address: str | None = None  # a Ray cluster to join ("auto", "ray://host:10001"); default: a local one

    @model_validator(mode="before")
    @classmethod
    def _old_backend_key(cls, data: Any) -> Any:
        """`[execution] backend` was renamed `mode` (the word is now `[backend]`'s); the old key still reads."""
        if isinstance(data, dict) and "backend" in data:
            if "mode" in data:
                raise ValueError("give `mode` only (`backend` is its deprecated name)")
            warnings.warn("[execution] backend is deprecated: write `mode` instead (`[backend]` now chooses the "
                          "engine: hf, vllm or server)", FutureWarning, stacklevel=2)
            data = {("mode" if k == "backend" else k): v for k, v in data.items()}
        return data


class BackendConfig(_Strict):
    """The engine that answers requests (`harness.backends`): `hf` (transformers in this process, the default),
    `vllm` (in-process vLLM, `pip install 'ppeval[vllm]'`), or `server` (an OpenAI-compatible HTTP endpoint)."""

    kind: Literal["hf", "vllm", "server"] = "hf"
    url: str | None = None  # server: the API root, e.g. "http://127.0.0.1:8000/v1"
    base_model: str | None = None  # server: the name the base model is served under
    api_key_env: str | None = None  # server: the environment variable that holds the API key (never written)
    timeout_s: float = Field(default=300.0, gt=0)  # server: per HTTP request
    max_concurrency: int = Field(default=8, ge=1)  # server: requests in flight at once
    max_retries: int = Field(default=4, ge=0)  # server: retries with backoff on 429/5xx and dropped connections
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)  # vllm
    kv_cache_memory_bytes: int | None = Field(default=None, gt=0)  # vllm (on CPU: set it, else 0.92 x RAM)

    @model_validator(mode="after")
    def _server_needs_url(self) -> BackendConfig:
        if self.kind == "server":
            if not self.url or not re.match(r"^https?://", self.url):
                raise ValueError('kind = "server" needs `url`, an http(s) address such as "http://127.0.0.1:8000/v1"')
            if not self.base_model:
                raise ValueError('kind = "server" needs `base_model`, the name the server serves the base under')
        return self


#: `[backend]` keys that say how requests travel, not what is measured: left out of the config hash
_BACKEND_TRANSPORT = {"api_key_env", "timeout_s", "max_concurrency", "max_retries"}


class RunConfig(_Strict):
    """A whole run config (README.md, "Run config"; docs/design.md)."""

    model: ModelConfig
    subjects: list[SubjectConfig] = Field(default_factory=list)
    data: DataConfig = Field(default_factory=DataConfig)
    suites: dict[str, dict[str, Any]] = Field(default_factory=dict)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    run: RunOptions = Field(default_factory=RunOptions)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)

    @model_validator(mode="after")
    def _sources_fit_the_backend(self) -> RunConfig:
        for subject in self.subjects:
            if self.backend.kind != "server" and subject.adapter is None and subject.model is None:
                raise ValueError(f'subject "{subject.name}": expected exactly one of `adapter` (a PEFT directory) or '
                                 "`model` (a full fine-tune); only a `server` backend evaluates a subject by its "
                                 "served name alone")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> RunConfig:
        seen: set[str] = set()
        for subject in self.subjects:
            if subject.name in seen:
                raise ValueError(f'two subjects are named "{subject.name}"; names must be unique')
            seen.add(subject.name)
        return self

    def sha256(self) -> str:
        """Hash of the resolved config, recorded in the scorecard's provenance. `[execution]`, the cache path and
        the server's transport settings are left out: where requests ran, how they travelled and where results
        were kept do not change what was measured (a default `[backend]` is left out too: older hashes hold)."""
        what = self.model_dump(mode="json", exclude_none=True, exclude={
            "execution": True, "run": {"cache_dir"},
            "backend": True if self.backend == BackendConfig() else _BACKEND_TRANSPORT})
        return hashlib.sha256(tomli_w.dumps(what).encode()).hexdigest()


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the pydantic model found by following `loc` from `model`."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        annotation = current.model_fields[part].annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(source: str, error: ValidationError, model: type[BaseModel]) -> str:
    """One readable line per problem: the file, the dotted key, what was expected."""
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        if item["type"] == "extra_forbidden":
            hint = did_you_mean(str(loc[-1]), _fields_at(model, loc[:-1]))
            lines.append(f"{source}: unknown key `{key}`{hint}")
        elif item["type"] == "missing":
            lines.append(f"{source}: missing required key `{key}`")
        else:
            msg = item["msg"].removeprefix("Value error, ")
            got = item.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            lines.append(f"{source}: `{key}`: {msg}{shown}" if key else f"{source}: {msg}")
    return "\n".join(lines)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise InputError(f"{path}: config file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; expected a TOML config file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: TOML syntax error: {exc}") from None


def _resolve(base_dir: Path, value: Path | None) -> Path | None:
    if value is None:
        return None
    value = value.expanduser()
    return value if value.is_absolute() else (base_dir / value).resolve()


def _resolve_option_paths(base_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Suite options named `*_file`, `*_path` or `*_dir` are paths relative to the config file."""
    return {
        key: str(_resolve(base_dir, Path(value)))
        if isinstance(value, str) and key.endswith(("_file", "_path", "_dir")) else value
        for key, value in options.items()
    }


def _check_paths(source: Path, config: RunConfig) -> None:
    def need(path: Path | None, key: str, kind: Literal["dir", "file"]) -> None:
        if path is None:
            return
        if not path.exists():
            raise InputError(f"{source}: `{key}` = {str(path)!r} does not exist")
        if kind == "dir" and not path.is_dir():
            raise InputError(f"{source}: `{key}` = {str(path)!r} is a file; expected a model directory")
        if kind == "file" and not path.is_file():
            raise InputError(f"{source}: `{key}` = {str(path)!r} is a directory; expected a file")

    need(config.model.base, "model.base", "dir")
    for i, subject in enumerate(config.subjects):
        need(subject.adapter, f"subjects[{i}].adapter", "dir")
        need(subject.model, f"subjects[{i}].model", "dir")
    for name in ("training", "holdout", "canaries"):
        need(getattr(config.data, name), f"data.{name}", "file")


def parse_config(raw: dict[str, Any], *, source: str, base_dir: Path) -> RunConfig:
    """Validate a config mapping and resolve its relative paths against `base_dir`."""
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(format_validation_error(source, exc, RunConfig)) from None
    model = config.model.model_copy(update={"base": _resolve(base_dir, config.model.base),
                                            "offload_dir": _resolve(base_dir, config.model.offload_dir)})
    subjects = [
        s.model_copy(update={"adapter": _resolve(base_dir, s.adapter), "model": _resolve(base_dir, s.model)})
        for s in config.subjects
    ]
    data = DataConfig(**{k: _resolve(base_dir, v) for k, v in config.data.model_dump().items()})
    run = config.run.model_copy(update={"cache_dir": _resolve(base_dir, config.run.cache_dir)})
    suites = {name: _resolve_option_paths(base_dir, options) for name, options in config.suites.items()}
    resolved = config.model_copy(
        update={"model": model, "subjects": subjects, "data": data, "run": run, "suites": suites}
    )
    _check_paths(Path(source), resolved)
    _check_suite_names(source, resolved)
    _check_data_files(resolved)
    CONFIG_SOURCE.set(source)
    return resolved


def _check_suite_names(source: str, config: RunConfig) -> None:
    """Every `[suites.<name>]` table names a registered suite, whether or not `--suites` selects it."""
    from harness.registry import suite_names

    known = suite_names()
    for name in config.suites:
        if name not in known:
            raise InputError(f"{source}: unknown suite `suites.{name}`{did_you_mean(name, known)}; "
                             f"known: {', '.join(known)}")


def _check_data_files(config: RunConfig) -> None:
    """Every data file the config names is read through once (streamed) before any model loads: bad JSON,
    non-UTF-8 bytes, a missing field, an empty file or empty texts are refused naming the file and line."""
    from harness.canaries import read_canaries
    from harness.data import validate_text_file

    for path in (config.data.training, config.data.holdout):
        if path is not None:
            validate_text_file(path)
    if config.data.canaries is not None and not read_canaries(config.data.canaries):
        raise InputError(f"{config.data.canaries}: no canaries (the file is empty); expected the lines "
                         "`ppeval canaries make` writes, or leave `data.canaries` out")


def load_config(path: str | Path) -> RunConfig:
    """Read, validate and resolve a run config; raises `InputError` naming the file and key."""
    path = Path(path)
    return parse_config(_read_toml(path), source=str(path), base_dir=path.resolve().parent)


def dump_config(config: RunConfig) -> str:
    """The resolved config as TOML (absolute paths), which reproduces the run."""
    data = config.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)
