"""The `hf` backend: the transformers engine (`harness.engine`) in this process, subject-major.

Importing this module does not import torch: the engine is loaded on the first `serve`, and the cache key
(`settings`) is computed from the config and the base's config.json, with torch imported only to resolve
`device = "auto"` (or `dtype = "auto"` on CUDA).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import Capabilities, Sink, Work, package_version
from harness.requests import EngineSettings, GenerateRequest, ScoreRequest

if TYPE_CHECKING:
    from harness.config import ModelConfig, RunConfig
    from harness.subjects import Subject

#: 2: every request cut to the context; BOS only where the tokenizer adds one by default.
#: 3: a score request holds at most max_length - 1 tokens, as on vLLM and servers
ENGINE_VERSION = "3"


def hf_settings(base_dir: Path, *, dtype: str, device_type: str, prompt_format: str) -> EngineSettings:
    """The engine's settings from resolved `dtype` and device type (see `resolve_model_settings`)."""
    config = json.loads((Path(base_dir) / "config.json").read_text(encoding="utf-8"))
    return EngineSettings(
        dtype=dtype,
        prompt_format=prompt_format,  # type: ignore[arg-type]
        max_length=int(config.get("max_position_embeddings") or 2048),
        engine_version=ENGINE_VERSION,
        extra={"device_type": device_type},
    )


def resolve_model_settings(model: ModelConfig) -> EngineSettings:
    """`hf_settings` for a `[model]` table: explicit device and dtype resolve without torch."""
    device, dtype = model.device, model.dtype
    if device == "auto" or (dtype == "auto" and device.startswith("cuda")):
        from harness.engine import resolve_device, resolve_dtype  # torch decides what "auto" means here

        resolved = resolve_device(device)
        device_type, dtype = resolved.type, str(resolve_dtype(dtype, resolved)).removeprefix("torch.")
    else:
        device_type = device.split(":")[0]
        dtype = "float32" if dtype == "auto" else dtype
    return hf_settings(model.base, dtype=dtype, device_type=device_type, prompt_format=model.prompt_format)


def default_engine(config: RunConfig) -> Any:
    """The engine for `config.model` (the `hf` backend's default engine factory)."""
    from harness.engine import Engine

    m = config.model
    return Engine(m.base, dtype=m.dtype, device=m.device, prompt_format=m.prompt_format,
                  trust_remote_code=m.trust_remote_code, allow_pickle=m.allow_pickle,
                  max_batch_tokens=m.max_batch_tokens, device_map=m.device_map, max_memory=m.max_memory,
                  offload_dir=m.offload_dir, static_cache=m.static_cache)


class HFBackend:
    """Loads the base once (on first use) and serves subjects one at a time: merged LoRA, restored base."""

    kind = "hf"

    def __init__(self, config: RunConfig, engine_factory: Callable[[RunConfig], Any] | None = None) -> None:
        self.config = config
        self.engine_factory = engine_factory or default_engine
        self.engine: Any = None

    def __getstate__(self) -> dict[str, Any]:  # sent to Ray workers unloaded: each loads its own engine
        return {**self.__dict__, "engine": None}

    def settings(self) -> EngineSettings:
        return resolve_model_settings(self.config.model)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(mixed_subjects=False, reasons={
            "mixed_subjects": "the engine merges one subject's adapter into the base weights at a time"})

    def subjects(self, config: RunConfig) -> list[Subject]:
        from harness.subjects import resolve_subjects

        return resolve_subjects(config)

    def load(self) -> Any:
        """The engine, loaded on first use."""
        if self.engine is None:
            self.engine = self.engine_factory(self.config)
        return self.engine

    def serve(self, work: Work, sink: Sink) -> dict[str, list[str]]:
        engine = self.load()
        notes: dict[str, list[str]] = {}
        for subject, requests in work:
            notes[subject.name] = list(engine.activate(subject))
            try:
                scores = [r for r in requests if isinstance(r, ScoreRequest)]
                gens = [r for r in requests if isinstance(r, GenerateRequest)]
                if scores:
                    engine.score(scores, on_batch=_batch_sink(sink, subject, scores))
                if gens:
                    engine.generate(gens, on_batch=_batch_sink(sink, subject, gens))
            finally:
                engine.deactivate()
        return notes

    def environment(self) -> dict[str, str]:
        settings = self.settings()
        device = settings.extra.get("device_type", "?")
        if self.engine is not None and getattr(self.engine, "device", None) is not None:
            device = str(self.engine.device)
            if device.startswith("cuda"):
                import torch

                device = torch.cuda.get_device_name(self.engine.device)
        return {"backend": "hf", "engine_version": settings.engine_version, "dtype": settings.dtype,
                "prompt_format": settings.prompt_format, "max_length": str(settings.max_length), "device": device,
                "torch": package_version("torch"), "transformers": package_version("transformers"),
                "peft": package_version("peft"), "settings_key": settings.key[:16], **self.capabilities.as_strings()}

    def close(self) -> None:
        self.engine = None


def _batch_sink(sink: Sink, subject: Subject, requests: list[Any]) -> Callable[[list[int], list[Any]], None]:
    """The engine's `on_batch(indices, responses)` as a backend `Sink` call."""

    def on_batch(indices: list[int], responses: list[Any]) -> None:
        sink(subject, [requests[i] for i in indices], responses)

    return on_batch
