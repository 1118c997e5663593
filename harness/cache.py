"""On-disk result cache keyed by (subject hash, engine settings, request hash).

SQLite (stdlib) gives atomic commits: every finished batch is committed at once, so a crash or
Ctrl-C loses nothing already computed, and a new run for one more adapter reuses the base's rows.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from harness.errors import RunFailure
from harness.requests import Response, response_from_json, response_to_json


def default_cache_dir() -> Path:
    """`$PPEVAL_CACHE_DIR`, else `$XDG_CACHE_HOME/ppeval`, else `~/.cache/ppeval`."""
    if os.environ.get("PPEVAL_CACHE_DIR"):
        return Path(os.environ["PPEVAL_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ppeval"


def _cache_failure(path: Path, exc: sqlite3.Error) -> RunFailure:
    """A cache that cannot be used, named, with what to do about it (exit 3)."""
    text = str(exc)
    if "full" in text.lower():
        hint = ("the disk holding it is full: free space there, or put the cache elsewhere (`run.cache_dir` in the "
                "config, `--cache-dir DIR`, or $PPEVAL_CACHE_DIR)")
    elif "not a database" in text or "malformed" in text or "corrupt" in text:
        hint = ("the file is corrupt: delete it (it holds only cached model responses, which the next run computes "
                "again), or use another cache (`run.cache_dir`, `--cache-dir DIR`, or $PPEVAL_CACHE_DIR)")
    else:
        hint = ("check the file's permissions and free space, or use another cache (`run.cache_dir` or "
                "`--cache-dir DIR`)")
    return RunFailure(f"result cache {path}: {text}; {hint}")


class ResultCache:
    """Responses stored per subject and engine settings; safe to share between runs. The cache holds raw model
    generations (which may repeat personal data from training), so its directory is 0700 and its files 0600."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "results.sqlite"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if directory.stat().st_uid == os.getuid():
                os.chmod(directory, 0o700)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            for file in (self.path, self.path.with_name(self.path.name + "-wal"),
                         self.path.with_name(self.path.name + "-shm")):
                if file.exists():
                    os.chmod(file, 0o600)
        except OSError as exc:
            raise RunFailure(f"result cache {self.path}: cannot create it ({exc.strerror or exc}); use another cache "
                             "(`run.cache_dir`, `--cache-dir DIR`, or $PPEVAL_CACHE_DIR)") from None
        try:
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, response TEXT NOT NULL)")
            self._db.commit()
        except sqlite3.Error as exc:
            raise _cache_failure(self.path, exc) from None

    @staticmethod
    def _key(subject_sha: str, settings_key: str, request_key: str) -> str:
        return hashlib.sha256(f"{subject_sha}:{settings_key}:{request_key}".encode()).hexdigest()

    def get_many(self, subject_sha: str, settings_key: str, request_keys: Iterable[str]) -> dict[str, Response]:
        """Cached responses for the requests that have one, by request key."""
        wanted = {self._key(subject_sha, settings_key, k): k for k in request_keys}
        found: dict[str, Response] = {}
        keys = list(wanted)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                rows = self._db.execute(f"SELECT key, response FROM results WHERE key IN ({marks})", chunk).fetchall()
            except sqlite3.Error as exc:
                raise _cache_failure(self.path, exc) from None
            for key, blob in rows:
                found[wanted[key]] = response_from_json(blob)
        return found

    def put_many(self, subject_sha: str, settings_key: str, items: Iterable[tuple[str, Response]]) -> None:
        """Store responses and commit at once."""
        rows = [(self._key(subject_sha, settings_key, k), response_to_json(r)) for k, r in items]
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO results (key, response) VALUES (?, ?)", rows)
        except sqlite3.Error as exc:
            raise _cache_failure(self.path, exc) from None

    def close(self) -> None:
        self._db.close()
