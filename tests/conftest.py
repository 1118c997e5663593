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
def demo_fixtures(tmp_path_factory: pytest.TempPathFactory):
    """The demo fixtures (seed 0), built once per test session (about a minute on 2 CPU cores)."""
    from harness.demo import build_demo_fixtures

    return build_demo_fixtures(tmp_path_factory.mktemp("demo"), seed=0)
