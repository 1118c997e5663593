"""The demo's run config: every suite on the demo fixtures' base and adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.config import RunConfig, parse_config

#: Demo-sized options for suites whose defaults are sized for real models (the demo must stay near 3 minutes on
#: 2 CPU cores); every registered suite is listed, so a table here never drops a suite from the demo.
DEMO_SUITE_OPTIONS: dict[str, dict[str, Any]] = {
    "memorization": {"n_references": 200, "max_extraction_records": 50},
    "bias": {"max_templates": 8, "max_pairs": 8},
    "overpersonalization": {"max_items": 48, "max_new_tokens": 32},
}


#: Tags on the demo's adapters, so that `ppeval report --group-by data` shows a strategy comparison.
DEMO_TAGS: dict[str, dict[str, str]] = {
    "clean": {"data": "scrubbed", "planted": "none"},
    "leaky": {"data": "raw", "planted": "memorization"},
    "biased": {"data": "skewed-decisions", "planted": "bias"},
    "overpersonal": {"data": "raw", "planted": "overpersonalization"},
}


def demo_config(*, seed: int = 0, progress: Callable[[str], None] | None = None) -> RunConfig:
    """Build (or reuse) the fixtures for `seed` and return a config that points at them."""
    from harness.demo import build_demo_fixtures, demo_cache_dir
    from harness.registry import suite_names

    fixtures = build_demo_fixtures(demo_cache_dir(seed), seed=seed, progress=progress)
    raw = {
        "model": {"base": str(fixtures.base), "prompt_format": "plain", "dtype": "float32"},
        "subjects": [
            {"name": name, "adapter": str(path), "tags": DEMO_TAGS.get(name, {})}
            for name, path in fixtures.adapters.items()
        ],
        "data": {
            "training": str(fixtures.training),
            "holdout": str(fixtures.holdout),
            "canaries": str(fixtures.canaries),
        },
        "suites": {name: dict(DEMO_SUITE_OPTIONS.get(name, {})) for name in suite_names()},
        "run": {"seed": seed},
    }
    return parse_config(raw, source="demo config", base_dir=fixtures.root)
