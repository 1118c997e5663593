"""The suite registry: every suite, built-in or third-party, comes from the `ppeval.suites` entry points.

Built-in suites are declared in this project's pyproject.toml like any plugin; `BUILTIN_SUITES` keeps their
canonical order and serves a source tree whose installed metadata predates the entry points.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from harness.errors import InputError, did_you_mean
from harness.metrics import MetricSpec, find_spec, suite_specs
from harness.suite import Suite

ENTRY_POINT_GROUP = "ppeval.suites"
OWN_DISTRIBUTION = "ppeval"
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
    metrics: tuple[MetricSpec, ...] = ()


def _load(target: str) -> type[Suite]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_points() -> dict[str, tuple[str, str]]:
    """name -> (distribution, target) for every registered suite, ppeval's own first."""
    found: dict[str, tuple[str, str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found.setdefault(ep.name, (dist.name if dist else "entry point", ep.value))
    for name, target in BUILTIN_SUITES.items():  # an editable install made before the table existed
        found.setdefault(name, (OWN_DISTRIBUTION, target))
    return found


def _origin(dist: str) -> str:
    return "built-in" if dist == OWN_DISTRIBUTION else dist


def suite_names() -> list[str]:
    """Built-in suites first, in their canonical order, then installed ones."""
    return list(BUILTIN_SUITES) + sorted(set(_entry_points()) - set(BUILTIN_SUITES))


def get_suite(name: str) -> type[Suite]:
    """The suite class registered under `name`; an unknown name is an input error."""
    found = _entry_points()
    if name not in found:
        raise InputError(
            f"unknown suite {name!r}{did_you_mean(name, suite_names())}; known: {', '.join(suite_names())}")
    return _load(found[name][1])


def metric_specs(name: str) -> tuple[MetricSpec, ...]:
    """The metric declarations of suite `name` (empty for an unknown or undeclared suite)."""
    try:
        return suite_specs(get_suite(name))
    except (InputError, ImportError, AttributeError):
        return ()


def spec_for(metric: str) -> MetricSpec | None:
    """The declaration of `<suite>.<key>`, or None."""
    suite, _, key = metric.partition(".")
    return find_spec(metric_specs(suite), key)


def describe_suites() -> list[SuiteInfo]:
    """Every available suite with its version, where it comes from, and its metric declarations."""
    found = _entry_points()
    infos = []
    for name in suite_names():
        cls = get_suite(name)
        infos.append(SuiteInfo(name, cls.version, _origin(found[name][0]), suite_specs(cls)))
    return infos
