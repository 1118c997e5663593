"""Everything that can be checked before a model loads: `ppeval check`, and the first thing `ppeval run` does.

Loading the config already validated its keys, paths, suite names and every data file it names (streamed);
this adds the subjects against the base (safetensors headers and adapter configs only), the selected suites,
the policy's metric names against those suites' declarations, the device, and the paths `--junit`,
`--summary` and `--out` will write. Nothing here imports torch: a CUDA or MPS device is probed in a short
subprocess when torch is not already loaded.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.config import PolicyConfig, RunConfig
from harness.errors import InputError

_PROBE = """
import sys, torch
device = sys.argv[1]
if device == "mps":
    ok = torch.backends.mps.is_available()
else:
    index = int(device.partition(":")[2] or 0)
    ok = torch.cuda.is_available() and index < torch.cuda.device_count()
print("ok" if ok else "absent")
"""


def device_available(device: str) -> bool:
    """Whether `device` ("cuda", "cuda:N", "mps"; anything else is always there) exists on this machine."""
    if not device.startswith(("cuda", "mps")):
        return True
    if "torch" in sys.modules:
        import torch

        if device == "mps":
            return bool(torch.backends.mps.is_available())
        index = int(device.partition(":")[2] or 0)
        return bool(torch.cuda.is_available() and index < torch.cuda.device_count())
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, device], capture_output=True, text=True, check=False)
    except OSError:
        return True  # cannot probe: the engine will say
    return done.stdout.strip() != "absent"


def check_device(config: RunConfig, source: str) -> None:
    """`model.device` names a device this machine has (exit 2 before any work, not an error deep in torch)."""
    device = config.model.device
    if not device_available(device):
        what = "no Apple MPS device" if device == "mps" else f"no CUDA device {device!r} (torch sees none, or fewer)"
        raise InputError(f"{source}: `model.device` = {device!r}, but this machine has {what}; "
                         "set `device = \"auto\"` or \"cpu\"")


def check_output_file(path: Path | None, flag: str) -> None:
    """`--junit`/`--summary` name a file whose directory exists (checked before the run, so a typo cannot hide
    the gate's verdict behind a failure at the end)."""
    if path is None:
        return
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a directory; expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: its directory {parent} does not exist")


def selected_suites(config: RunConfig, names: Sequence[str] | None) -> list[str]:
    """The suites a run would select (`--suites`, else the config's tables, else every registered suite);
    an unknown name is an `InputError` with a did-you-mean."""
    from harness.registry import get_suite, suite_names

    chosen = list(names or config.suites) or suite_names()
    for name in chosen:
        get_suite(name)
    return chosen


def check_suite_options(config: RunConfig, suites: Sequence[str]) -> None:
    """Each selected suite's `[suites.<name>]` table against the suite's `options_model`, where it declares one:
    a typo exits 2 naming `suites.<name>.<key>` before any model or data loads."""
    from harness.registry import get_suite
    from harness.suite import parse_options

    for name in suites:
        model = getattr(get_suite(name), "options_model", None)
        if model is not None:
            parse_options(name, model, config.suites.get(name, {}))


def check_policy(policy: PolicyConfig, suites: Sequence[str], source: str) -> None:
    """Every gate names a metric that one of the selected suites declares; a gate on a suite that `--suites`
    left out says so."""
    from harness.gates import check_policy_metrics
    from harness.registry import metric_specs, suite_names

    declared = {name: metric_specs(name) for name in suites}
    left_out = tuple(n for n in suite_names() if n not in declared)
    try:
        check_policy_metrics(policy, declared, left_out=left_out)
    except InputError as exc:
        hint = (" (a suite that is not selected: add it to --suites, or drop the gate)"
                if any(f"suite {n!r} is not selected" in str(exc) for n in left_out) else "")
        raise InputError(f"{source}: {exc}{hint}") from None


def preflight(config: RunConfig, *, source: str, suites: Sequence[str] | None = None,
              policy: PolicyConfig | None = None, policy_source: str = "", junit: Path | None = None,
              summary: Path | None = None) -> list[str]:
    """Run every check; returns one line per thing checked, or raises `InputError` at the first problem."""
    lines = [f"config {source}: keys, paths and suite tables ok"]
    for name in ("training", "holdout", "canaries"):
        path = getattr(config.data, name)
        if path is not None:
            lines.append(f"data.{name} {path}: every line read and valid")
    check_output_file(junit, "--junit")
    check_output_file(summary, "--summary")
    from harness.subjects import validate_subjects

    for name, kind, path in validate_subjects(config):
        lines.append(f"{name} ({kind}) {path}: " + ("headers ok" if kind == "base" else "fits the base"))
    check_device(config, source)
    lines.append(f"device {config.model.device}: available")
    chosen = selected_suites(config, suites)
    check_suite_options(config, chosen)
    lines.append(f"suites: {', '.join(chosen)} (options valid where the suite declares its options model)")
    check_policy(config.policy, chosen, source)
    lines.append(f"policy in {source}: {len(config.policy.gate)} gate(s), every metric declared by a selected suite")
    if policy is not None:
        check_policy(policy, chosen, policy_source)
        lines.append(f"policy {policy_source}: {len(policy.gate)} gate(s), every metric declared by a selected suite")
    return lines
