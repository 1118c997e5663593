"""Each fine-tune's lineage for the scorecard: what it was fine-tuned from and on (the EU AI Act GPAI code of
practice asks for a model's secure hash and its origin)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from harness.config import RunConfig
from harness.integrity import file_digest
from harness.subjects import Subject


def _declared_base(subject: Subject) -> str | None:
    """The adapter config's `base_model_name_or_path`, or a full fine-tune config's `_name_or_path`."""
    name = "adapter_config.json" if subject.kind == "adapter" else "config.json"
    key = "base_model_name_or_path" if subject.kind == "adapter" else "_name_or_path"
    try:
        value = json.loads((subject.path / name).read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def subject_lineage(config: RunConfig, subjects: Sequence[Subject]) -> dict[str, dict[str, str]]:
    """Per subject: base name and digest, its own digest, the base it declares, and the training-data digests."""
    base = next((s for s in subjects if s.kind == "base"), None)
    data = {f"{field}_sha256": file_digest(path) for field in ("training", "holdout", "canaries")
            if (path := getattr(config.data, field)) is not None and Path(path).is_file()}
    out: dict[str, dict[str, str]] = {}
    for subject in subjects:
        if subject.kind == "base":
            out[subject.name] = {"model_sha256": subject.sha256}
            continue
        entry = {"model_sha256": subject.sha256, **data}
        if base is not None:
            entry |= {"base_name": base.path.name, "base_sha256": base.sha256}
        declared = _declared_base(subject)
        if declared is not None:
            entry["declared_base"] = declared
        out[subject.name] = entry
    return out
