"""The suite registry: built-in suites plus third-party ones from the `ppeval.suites` entry points."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from harness.errors import InputError, did_you_mean
from harness.suite import Suite

ENTRY_POINT_GROUP = "ppeval.suites"
BUILTIN_SUITES: dict[str, str] = {
    "perplexity": "suites.perplexity:PerplexitySuite",
    "memorization": "suites.memorization:MemorizationSuite",
    "pii_leakage": "suites.pii_leakage:PiiLeakageSuite",
    "bias": "suites.bias:BiasSuite",
    "overpersonalization": "suites.overpersonalization:OverpersonalizationSuite",
    "accuracy": "suites.accuracy:AccuracySuite",
}


@dataclass(frozen=True)
class SuiteInfo:
    name: str
    version: str
    origin: str  # "built-in" or the distribution that provides it


def _load(target: str) -> type[Suite]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _third_party() -> dict[str, tuple[str, object]]:
    found: dict[str, tuple[str, object]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found[ep.name] = (dist.name if dist else "entry point", ep)
    return found


def suite_names() -> list[str]:
    """Built-in suites first, in their canonical order, then installed ones."""
    return list(BUILTIN_SUITES) + sorted(set(_third_party()) - set(BUILTIN_SUITES))


def get_suite(name: str) -> type[Suite]:
    """The suite class registered under `name`; an unknown name is an input error."""
    if name in BUILTIN_SUITES:
        return _load(BUILTIN_SUITES[name])
    third = _third_party()
    if name in third:
        return third[name][1].load()  # type: ignore[attr-defined, no-any-return]
    raise InputError(f"unknown suite {name!r}{did_you_mean(name, suite_names())}; known: {', '.join(suite_names())}")


def describe_suites() -> list[SuiteInfo]:
    """Every available suite with its version and where it comes from."""
    third = _third_party()
    infos = []
    for name in suite_names():
        cls = get_suite(name)
        origin = "built-in" if name in BUILTIN_SUITES else third[name][0]
        infos.append(SuiteInfo(name, cls.version, origin))
    return infos
