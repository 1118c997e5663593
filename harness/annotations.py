"""The sign-off trail: reviewers' decisions on a run, appended to `annotations.jsonl` as a hash chain.

One canonical-JSON line per entry: `seq`, `time`, `author`, `decision`, `reason`, `run_id`, the canonical
`scorecard_sha256` the decision refers to, `prev_sha256` (the previous entry's `sha256`, null for the first) and
`sha256` over the entry's canonical JSON without that field. Editing, inserting, reordering or deleting an earlier
entry breaks the chain at that point. Cutting entries off the *end* leaves a valid shorter chain: record the head
hash that `ppeval verify` prints wherever the decision is filed (a ticket, a release note) to detect that too.
An entry may carry `subject` (`annotate --subject NAME`): a decision on one adapter rather than the whole run.
Annotations never touch the scorecard or manifest.json (which excludes this file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from harness.errors import InputError
from harness.integrity import ANNOTATIONS, SCORECARD, SCORECARD_HASH, canonical_json, scorecard_sha256, sha256_hex

DECISIONS = ("approve", "reject", "needs-work")
_UNKNOWN = "?"  # the hash to chain to after an unreadable line: the next link cannot be judged
_FIELDS = ("seq", "time", "author", "decision", "reason", "run_id", "scorecard_sha256", "prev_sha256", "sha256")


def entry_sha256(entry: dict[str, Any]) -> str:
    """The hash an entry carries: over its canonical JSON without `sha256`."""
    return sha256_hex(canonical_json({k: v for k, v in entry.items() if k != "sha256"}))


@dataclass
class ChainCheck:
    """The entries read and any break found; `head` is the last entry's hash."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def head(self) -> str | None:
        return self.entries[-1].get("sha256") if self.entries else None

    def summary(self) -> str:
        """One line for `verify`: how many entries, the latest decision and the head hash to file elsewhere."""
        if not self.entries:
            return f"{ANNOTATIONS}: empty"
        last = self.entries[-1]
        count = f"{len(self.entries)} entr{'y' if len(self.entries) == 1 else 'ies'}"
        return (f"{ANNOTATIONS}: {count}, chain intact; latest: {last.get('decision')} by {last.get('author')} "
                f"at {last.get('time')}; head sha256 {self.head}")


def _check_line(raw: bytes, lineno: int, expected_seq: int, prev: str | None, scorecard: str | None,
                out: ChainCheck) -> tuple[int, str | None]:
    """Check one line against its predecessor; returns the next expected seq and the hash to chain to."""
    where = f"line {lineno}"
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        out.problems.append(f"{where} was edited: no longer valid JSON")
        return expected_seq + 1, _UNKNOWN
    try:
        canonical_json(entry)
    except ValueError:  # NaN or infinity: never written by `annotate`
        entry = None
    if not isinstance(entry, dict) or set(entry) - {"subject"} != set(_FIELDS) or not isinstance(entry["seq"], int):
        out.problems.append(f"{where} was edited: not an annotation entry (fields {', '.join(_FIELDS)})")
        return expected_seq + 1, _UNKNOWN
    out.entries.append(entry)
    seq = entry["seq"]
    where = f"entry {seq} ({where})"
    if seq > expected_seq:
        gone = f"entry {expected_seq}" if seq == expected_seq + 1 else f"entries {expected_seq}–{seq - 1}"
        out.problems.append(f"line {lineno} holds entry {seq} where entry {expected_seq} should be: {gone} "
                            "deleted")
    elif seq < expected_seq:
        out.problems.append(f"line {lineno} holds entry {seq} where entry {expected_seq} should be: entries "
                            "reordered or duplicated")
    elif prev != _UNKNOWN and entry["prev_sha256"] != prev:
        before = f"entry {seq - 1}" if seq > 1 else "the start of the trail"
        out.problems.append(f"{where}: the chain breaks here, its prev_sha256 is not the sha256 of {before} "
                            "(an earlier entry was edited and re-hashed, removed or inserted)")
    if entry["sha256"] != entry_sha256(entry):
        out.problems.append(f"{where} was edited: its content no longer matches its sha256")
    elif canonical_json(entry) != raw:
        out.problems.append(f"{where} was edited: its bytes differ from the canonical JSON written")
    if scorecard is not None and entry["scorecard_sha256"] != scorecard:
        out.problems.append(f"{where} signs off scorecard {str(entry['scorecard_sha256'])[:16]}…, but this run's "
                            f"scorecard is {scorecard[:16]}… (the scorecard changed after sign-off)")
    return seq + 1, entry["sha256"]


def check_chain_bytes(data: bytes, scorecard_sha256: str | None = None) -> ChainCheck:
    """Check every entry of an annotations.jsonl content; problems say which entry and line broke."""
    out = ChainCheck()
    lines = data.split(b"\n")
    if lines[-1]:
        out.problems.append(f"line {len(lines)} has no final newline: a write was cut short or the file was edited")
    expected, prev = 1, None
    for lineno, raw in enumerate(lines[:-1] if not lines[-1] else lines, start=1):
        expected, prev = _check_line(raw, lineno, expected, prev, scorecard_sha256, out)
    return out


def check_chain(path: Path, scorecard_sha256: str | None = None) -> ChainCheck:
    """`check_chain_bytes` on a file."""
    return check_chain_bytes(Path(path).read_bytes(), scorecard_sha256)


def read_annotations(path: Path) -> list[dict[str, Any]]:
    """The entries of an annotations.jsonl for display (no chain check); [] when there is none."""
    if not Path(path).is_file():
        return []
    return check_chain(path).entries


@contextmanager
def _locked(path: Path) -> Iterator[IO[bytes]]:
    """The trail opened for append under an exclusive lock, so two reviewers cannot fork the chain."""
    with open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            yield handle
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _current_scorecard(run_dir: Path) -> tuple[str, str]:
    """(canonical hash, run id) of the run's scorecard; refuses a scorecard that no longer matches its sidecar."""
    path = run_dir / SCORECARD
    if not path.is_file():
        raise InputError(f"{run_dir}: no {SCORECARD}; expected a ppeval run directory")
    digest = scorecard_sha256(path)
    sidecar = run_dir / SCORECARD_HASH
    if sidecar.is_file() and sidecar.read_text(encoding="utf-8", errors="replace").strip() != digest:
        raise InputError(f"{path} no longer matches {SCORECARD_HASH}: refusing to sign off a changed scorecard "
                         "(run `ppeval verify` on the directory)")
    run_id = json.loads(path.read_text(encoding="utf-8")).get("run", {}).get("id", "")
    return digest, str(run_id)


def append_annotation(run_dir: Path, *, author: str, decision: str, reason: str, subject: str | None = None,
                      now: datetime | None = None) -> dict[str, Any]:
    """Append one sign-off entry after checking the chain so far; returns the entry written. `subject` makes it a
    decision on that subject of the run (it must be one of the scorecard's subjects)."""
    run_dir = Path(run_dir)
    author, reason = author.strip(), reason.strip()
    if decision not in DECISIONS:
        raise InputError(f"--decision {decision!r}: expected one of {', '.join(DECISIONS)}")
    if not author or not reason:
        raise InputError("annotate: --author and --reason must not be empty")
    digest, run_id = _current_scorecard(run_dir)
    if subject is not None:
        names = [s.get("name") for s in json.loads((run_dir / SCORECARD).read_text(encoding="utf-8")).get(
            "subjects", []) if isinstance(s, dict)]
        if subject not in names:
            raise InputError(f"--subject {subject!r}: not a subject of this run (it has {', '.join(map(str, names))})")
    with _locked(run_dir / ANNOTATIONS) as handle:
        handle.seek(0)
        chain = check_chain_bytes(handle.read(), digest)
        if chain.problems:
            raise InputError(f"{run_dir / ANNOTATIONS} is broken, not appending: " + "; ".join(chain.problems))
        entry: dict[str, Any] = {
            "seq": len(chain.entries) + 1,
            "time": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
            "author": author, "decision": decision, "reason": reason, "run_id": run_id,
            "scorecard_sha256": digest, "prev_sha256": chain.head,
        }
        if subject is not None:
            entry["subject"] = subject
        entry["sha256"] = entry_sha256(entry)
        handle.write(canonical_json(entry) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry
