"""Shared fixtures: tiny random models and adapters (seconds), and the demo fixtures (a minute or two)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tiny import make_adapter, make_base, make_full_finetune


@dataclass(frozen=True)
class TinyModels:
    base: Path
    adapter: Path
    zero_adapter: Path
    full: Path
    other_base: Path
    other_adapter: Path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    root = tmp_path_factory.mktemp("tiny")
    base = make_base(root / "base")
    other = make_base(root / "other-base", hidden=48, seed=5)
    return TinyModels(
        base=base,
        adapter=make_adapter(base, root / "adapter"),
        zero_adapter=make_adapter(base, root / "zero", zero=True),
        full=make_full_finetune(base, root / "full"),
        other_base=other,
        other_adapter=make_adapter(other, root / "other-adapter"),
    )


@pytest.fixture(scope="session")
def demo_fixtures():
    """The demo fixtures (seed 0) from the demo cache (`demo_cache_dir`, as `ppeval demo` uses it): built once
    (about six minutes on 2 CPU cores) and reused by every later session while the factory's sources are
    unchanged (the manifest's fingerprint), so the slow modules can be run one at a time."""
    from harness.demo import build_demo_fixtures

    return build_demo_fixtures(seed=0)
