"""Atomic file and directory writes: a reader sees the old content or the new, never half of either.

A run directory is published only where it cannot destroy anything: a path that does not exist yet, or
(with `--overwrite`) an earlier ppeval run directory holding nothing but the files its manifest lists.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from harness.errors import InputError


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_files(target: Path) -> set[str] | None:
    """The files an earlier ppeval run wrote into `target` (its manifest's list), or None if it holds no run."""
    from harness.integrity import MANIFEST, SCORECARD_HASH, SIGNATURE

    try:
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
        files = set(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files | {MANIFEST, SIGNATURE, SCORECARD_HASH}


def check_output_dir(target: Path, *, overwrite: bool = False, what: str = "--out") -> None:
    """Refuse (exit 2) an output path a run may not publish to: `.`/`..`, a symlink, a file, an existing
    directory that is not a ppeval run directory, or a run directory without `--overwrite`. With
    `--overwrite` a run directory is replaced only when it holds nothing but its manifest's files and no
    sign-off trail (`annotations.jsonl` records decisions about the old scorecard: it is never dropped)."""
    from harness.integrity import ANNOTATIONS

    if target.name in ("", ".", "..") or target.resolve() in (Path.cwd(), *Path.cwd().parents):
        raise InputError(f"{what} {target}: expected a new directory for the run, not the current directory "
                         "or one of its parents")
    if target.is_symlink():
        raise InputError(f"{what} {target}: is a symbolic link; give the directory itself or a new path")
    if not target.exists():
        return
    if not target.is_dir():
        raise InputError(f"{what} {target}: is an existing file; expected a new directory for the run")
    owned = _run_files(target)
    if owned is None:
        raise InputError(f"{what} {target}: is an existing directory that holds no ppeval run (no manifest.json); "
                         "a run writes only into a new directory, so nothing of yours is replaced")
    if not overwrite:
        raise InputError(f"{what} {target}: holds an earlier ppeval run; pass --overwrite to replace it, "
                         "or give a new directory")
    if (target / ANNOTATIONS).exists():
        raise InputError(f"{what} {target}: holds a sign-off trail ({ANNOTATIONS}) about its scorecard; "
                         "a run never replaces it: write to a new directory")
    present = {p.relative_to(target).as_posix() for p in target.rglob("*") if not p.is_dir()}
    foreign = sorted(present - owned)
    if foreign:
        raise InputError(f"{what} {target}: holds files the earlier run did not write ({', '.join(foreign[:5])}"
                         f"{', …' if len(foreign) > 5 else ''}); move them or give a new directory")


def make_staging_dir(target: Path) -> Path:
    """A private hidden directory beside `target` to write a run into before publishing it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))


def publish_directory(staging: Path, target: Path, *, overwrite: bool = False) -> None:
    """Move a fully written `staging` directory to `target` in one rename. The target is checked again here
    (another run may have published to it meanwhile); on refusal the staging directory is removed."""
    try:
        check_output_dir(target, overwrite=overwrite)
        if not target.exists():
            try:
                os.rename(staging, target)  # fails if a directory with files appeared meanwhile
            except OSError as exc:
                raise InputError(f"--out {target}: could not publish the run there ({exc.strerror}); "
                                 "another run may have written it: rerun with a new directory "
                                 "(the cache makes that cheap)") from None
            return
        old = target.with_name(f".{target.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
