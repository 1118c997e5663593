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

from harness.requests import Response, response_from_json, response_to_json


def default_cache_dir() -> Path:
    """`$PPEVAL_CACHE_DIR`, else `$XDG_CACHE_HOME/ppeval`, else `~/.cache/ppeval`."""
    if os.environ.get("PPEVAL_CACHE_DIR"):
        return Path(os.environ["PPEVAL_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ppeval"


class ResultCache:
    """Responses stored per subject and engine settings; safe to share between runs."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "results.sqlite"
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, response TEXT NOT NULL)")
        self._db.commit()

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
            for key, blob in self._db.execute(f"SELECT key, response FROM results WHERE key IN ({marks})", chunk):
                found[wanted[key]] = response_from_json(blob)
        return found

    def put_many(self, subject_sha: str, settings_key: str, items: Iterable[tuple[str, Response]]) -> None:
        """Store responses and commit at once."""
        rows = [(self._key(subject_sha, settings_key, k), response_to_json(r)) for k, r in items]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO results (key, response) VALUES (?, ?)", rows)

    def close(self) -> None:
        self._db.close()
