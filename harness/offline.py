"""Offline by construction: every flag that keeps Hugging Face libraries (and Ray's usage report) off the network.

`harness/__init__.py` calls `go_offline()` before anything else, so the flags are set before any import of
transformers, datasets, huggingface_hub, evaluate or lm_eval: those libraries read them once, at import time.
"""

from __future__ import annotations

import os

#: Environment variables set to these values (overriding the caller's: ppeval never downloads).
OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DISABLE_TELEMETRY": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def go_offline() -> None:
    """Set every flag in `OFFLINE_ENV` in this process (inherited by workers and subprocesses)."""
    os.environ.update(OFFLINE_ENV)
