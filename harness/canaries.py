"""Canaries in the style of Carlini et al., "The Secret Sharer" (USENIX Security 2019).

A canary is a template such as ``"my account recovery code is {secret}"`` filled with a random secret
drawn from a known secret space. Canaries are made in repetition buckets (each canary of a bucket is
inserted that many times into the training data) together with never-inserted *twins*: canaries made
the same way and kept out of training, so that a test can tell memorization from a model's prior.

Pure Python: nothing here touches torch.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError

PLACEHOLDER = "{secret}"
MIN_SPACE_SIZE = 1000  # a 3-digit code: the smallest space a team's own format may have
RECOMMENDED_SPACE_SIZE = 2**20  # below this, exposure cannot reach 20 bits: the suite warns


class CanaryError(InputError, ValueError):
    """A bad canary, secret space or canaries file (a ValueError; the CLI exits with status 2)."""


def _check_template(template: str) -> None:
    """Raise CanaryError unless `template` is a string holding `{secret}` exactly once."""
    if not isinstance(template, str):
        raise CanaryError(f"canary template must be a string, got {type(template).__name__}")
    count = template.count(PLACEHOLDER)
    if count != 1:
        raise CanaryError(
            f"canary template must contain {PLACEHOLDER} exactly once, found it {count} times: {template!r}"
        )


def _is_int(value: Any) -> bool:
    """True for a real int (bools are not counts)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SecretSpace:
    """The space secrets are drawn from: every string of `length` characters of `alphabet`.

    Its size must be at least 1,000 (a team's 6-digit PINs, 10**6, are accepted); below 2**20 exposure
    cannot reach 20 bits and the memorization suite warns. The default (7 decimal digits, 10**7
    candidates) is the smallest all-digit space above 2**20.
    """

    alphabet: str = "0123456789"
    length: int = 7

    def __post_init__(self) -> None:
        if not isinstance(self.alphabet, str) or not self.alphabet:
            raise CanaryError("secret alphabet must be a non-empty string")
        if len(set(self.alphabet)) != len(self.alphabet):
            raise CanaryError(f"secret alphabet has repeated characters: {self.alphabet!r}")
        if any(c.isspace() for c in self.alphabet):
            raise CanaryError(f"secret alphabet may not contain whitespace: {self.alphabet!r}")
        if not _is_int(self.length) or self.length < 1:
            raise CanaryError(f"secret length must be a positive integer, got {self.length!r}")
        if self.size < MIN_SPACE_SIZE:
            raise CanaryError(
                f"secret space too small: {len(self.alphabet)}**{self.length} = {self.size} candidates, "
                f"need at least {MIN_SPACE_SIZE} (use a longer secret or a larger alphabet)"
            )

    @property
    def size(self) -> int:
        """Number of distinct secrets: len(alphabet) ** length."""
        return len(self.alphabet) ** self.length

    @property
    def small(self) -> bool:
        """True below 2**20 candidates: accepted, but exposure is capped under 20 bits."""
        return self.size < RECOMMENDED_SPACE_SIZE

    def contains(self, secret: str) -> bool:
        """True when `secret` is a member of this space."""
        return (
            isinstance(secret, str) and len(secret) == self.length and all(c in self.alphabet for c in secret)
        )

    def sample(
        self, rng: random.Random, n: int, exclude: set[str] | frozenset[str] = frozenset()
    ) -> list[str]:
        """`n` distinct secrets drawn uniformly from the space, none of them in `exclude`."""
        if not _is_int(n) or n < 0:
            raise CanaryError(f"number of secrets must be a non-negative integer, got {n!r}")
        available = self.size - sum(1 for s in exclude if self.contains(s))
        if n > available:
            raise CanaryError(f"cannot draw {n} distinct secrets: only {available} left in the space")
        seen = set(exclude)
        out: list[str] = []
        while len(out) < n:
            secret = "".join(rng.choice(self.alphabet) for _ in range(self.length))
            if secret not in seen:
                seen.add(secret)
                out.append(secret)
        return out

    def to_json(self) -> dict[str, Any]:
        """The space as a JSON object."""
        return {"alphabet": self.alphabet, "length": self.length}


@dataclass(frozen=True)
class Canary:
    """One canary: `template` filled with `secret`, inserted `repetitions` times (0 for a twin)."""

    canary_id: str
    template: str
    secret: str
    repetitions: int
    space: SecretSpace

    def __post_init__(self) -> None:
        _check_template(self.template)
        if not isinstance(self.canary_id, str) or not self.canary_id:
            raise CanaryError("canary_id must be a non-empty string")
        if not _is_int(self.repetitions) or self.repetitions < 0:
            raise CanaryError(f"repetitions must be a non-negative integer, got {self.repetitions!r}")
        if not self.space.contains(self.secret):
            raise CanaryError(
                f"secret {self.secret!r} is not in the secret space "
                f"({self.space.length} characters of {self.space.alphabet!r})"
            )

    @property
    def prefix(self) -> str:
        """Template text before the secret (trailing whitespace kept)."""
        return self.template.split(PLACEHOLDER, 1)[0]

    @property
    def suffix(self) -> str:
        """Template text after the secret."""
        return self.template.split(PLACEHOLDER, 1)[1]

    @property
    def text(self) -> str:
        """The filled template: prefix + secret + suffix."""
        return self.prefix + self.secret + self.suffix

    @property
    def inserted(self) -> bool:
        """True for a canary meant for the training data, False for a never-inserted twin."""
        return self.repetitions > 0

    def to_json(self) -> dict[str, Any]:
        """The canary as one JSON object of a canaries file (derived fields included for readers)."""
        return {
            "canary_id": self.canary_id,
            "template": self.template,
            "prefix": self.prefix,
            "secret": self.secret,
            "suffix": self.suffix,
            "text": self.text,
            "repetitions": self.repetitions,
            "inserted": self.inserted,
            "space": self.space.to_json(),
        }


def make_canaries(
    template: str,
    *,
    n_per_bucket: int = 20,
    repetitions: Sequence[int] = (1, 2, 4, 8, 16),
    n_twins: int | None = None,
    space: SecretSpace | None = None,
    seed: int = 0,
) -> list[Canary]:
    """`n_per_bucket` canaries per repetition bucket, then never-inserted twins; all secrets distinct."""
    space = SecretSpace() if space is None else space
    _check_template(template)
    if not _is_int(n_per_bucket) or n_per_bucket < 1:
        raise CanaryError(f"n_per_bucket must be a positive integer, got {n_per_bucket!r}")
    reps = list(repetitions)
    if not reps:
        raise CanaryError("repetitions must name at least one bucket")
    for r in reps:
        if not _is_int(r) or r < 1:
            raise CanaryError(f"every repetition count must be an integer >= 1, got {r!r}")
    if len(set(reps)) != len(reps):
        raise CanaryError(f"repetition buckets must be distinct, got {reps}")
    n_twins = n_per_bucket * len(reps) if n_twins is None else n_twins
    if not _is_int(n_twins) or n_twins < 0:
        raise CanaryError(f"n_twins must be a non-negative integer, got {n_twins!r}")
    rng = random.Random(seed)
    secrets = iter(space.sample(rng, n_per_bucket * len(reps) + n_twins))
    canaries = [
        Canary(f"canary-r{r:02d}-{i:03d}", template, next(secrets), r, space)
        for r in reps
        for i in range(n_per_bucket)
    ]
    canaries += [Canary(f"twin-{i:03d}", template, next(secrets), 0, space) for i in range(n_twins)]
    return canaries


def _atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_canaries(path: str | os.PathLike[str], canaries: Sequence[Canary]) -> None:
    """Write canaries as JSONL (one object per canary), atomically."""
    lines = [json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in canaries]
    _atomic_write_text(Path(path), "".join(lines))


def _field(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    """obj[name], checked to exist and to have type `kind`, else a CanaryError naming the field."""
    if name not in obj:
        raise CanaryError(f"{where}: missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CanaryError(f"{where}: field {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _checked(where: str, name: str, make: Any) -> Any:
    """make(), with a CanaryError it raises reworded to name `where` and the field."""
    try:
        return make()
    except CanaryError as exc:
        raise CanaryError(f"{where}: field {name!r}: {exc}") from None


def _parse_canary(obj: Any, where: str) -> Canary:
    """One canary from one decoded JSONL line; derived fields, when present, must agree."""
    if not isinstance(obj, dict):
        raise CanaryError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    space_obj = _field(obj, "space", dict, where)
    alphabet = _field(space_obj, "alphabet", str, f"{where}: field 'space'")
    length = _field(space_obj, "length", int, f"{where}: field 'space'")
    space = _checked(where, "space", lambda: SecretSpace(alphabet, length))
    canary_id = _field(obj, "canary_id", str, where)
    template = _field(obj, "template", str, where)
    secret = _field(obj, "secret", str, where)
    repetitions = _field(obj, "repetitions", int, where)
    if not canary_id:
        raise CanaryError(f"{where}: field 'canary_id' must be a non-empty string")
    _checked(where, "template", lambda: _check_template(template))
    if repetitions < 0:
        raise CanaryError(f"{where}: field 'repetitions' must be >= 0, got {repetitions}")
    canary = _checked(where, "secret", lambda: Canary(canary_id, template, secret, repetitions, space))
    derived = {
        "prefix": canary.prefix,
        "suffix": canary.suffix,
        "text": canary.text,
        "inserted": canary.inserted,
    }
    for name, expected in derived.items():
        if name in obj and obj[name] != expected:
            raise CanaryError(
                f"{where}: field {name!r} is {obj[name]!r}, but the template and secret give {expected!r}"
            )
    return canary


def read_canaries(path: str | os.PathLike[str]) -> list[Canary]:
    """Canaries from a JSONL file; a bad line raises CanaryError naming the file, line and field."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CanaryError(f"{path}: cannot read canaries file: {exc}") from None
    canaries: list[Canary] = []
    unique = _Unique()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CanaryError(f"{where}: not valid JSON ({exc.msg})") from None
        canary = _parse_canary(obj, where)
        unique.check(canary, where, lineno)
        canaries.append(canary)
    return canaries


class _Unique:
    """Refuses a canary id or secret seen on an earlier line."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.secrets: dict[str, int] = {}

    def check(self, canary: Canary, where: str, lineno: int) -> None:
        if canary.canary_id in self.ids:
            raise CanaryError(
                f"{where}: field 'canary_id': {canary.canary_id!r} repeats line {self.ids[canary.canary_id]}"
            )
        if canary.secret in self.secrets:
            raise CanaryError(
                f"{where}: field 'secret': {canary.secret!r} repeats line {self.secrets[canary.secret]}"
            )
        self.ids[canary.canary_id] = self.secrets[canary.secret] = lineno


#: alphabets tried, smallest first, when a team's file does not name one
STANDARD_ALPHABETS = (
    "0123456789",
    "0123456789abcdef",
    "0123456789ABCDEF",
    "abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789abcdefghijklmnopqrstuvwxyz",
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
)


def _team_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a team's CSV (with a header) or JSONL canaries file."""
    from harness.data import iter_jsonl

    if path.suffix.lower() != ".csv":
        return list(iter_jsonl(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CanaryError(f"{path}: cannot read canaries file: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "secret" not in reader.fieldnames:
        raise CanaryError(f"{path}: a CSV canaries file needs a header with a 'secret' column, "
                          f"got {reader.fieldnames}")
    return [(reader.line_num, dict(row)) for row in reader]


def _team_row(row: dict[str, Any], where: str, template: str | None) -> tuple[str, str, int, str | None]:
    """(template, secret, repetitions, canary_id or None) of one row of a team's file."""
    secret = row.get("secret")
    if not isinstance(secret, str) or not secret:
        raise CanaryError(f"{where}: field 'secret' must be a non-empty string (quote codes in JSON so leading "
                          f"zeros survive), got {secret!r}")
    reps = row.get("repetitions")
    if isinstance(reps, str) and reps.strip().isdigit():
        reps = int(reps)
    if not _is_int(reps) or reps < 0:
        raise CanaryError(f"{where}: field 'repetitions' must be an integer >= 0 (0: a never-inserted twin), "
                          f"got {reps!r}")
    row_template = row.get("template") or None
    if row.get("prefix"):
        if row_template:
            raise CanaryError(f"{where}: give field 'template' or field 'prefix', not both")
        row_template = str(row["prefix"]) + PLACEHOLDER
    row_template = row_template or template
    if row_template is None:
        raise CanaryError(f"{where}: no template: give --template/--prefix or a 'template' or 'prefix' field")
    _checked(where, "template", lambda: _check_template(row_template))
    canary_id = row.get("canary_id")
    return row_template, secret, reps, None if canary_id in (None, "") else str(canary_id)


def _infer_space(path: Path, secrets: Sequence[tuple[str, str]], alphabet: str | None,
                 length: int | None) -> SecretSpace:
    """The space of a team's secrets: `alphabet`/`length` as given, else the smallest standard alphabet
    holding every character and the secrets' common length. `secrets` are (where, secret) pairs."""
    if length is None:
        length = len(secrets[0][1])
        for where, secret in secrets:
            if len(secret) != length:
                raise CanaryError(f"{where}: field 'secret': {secret!r} has {len(secret)} characters, the first "
                                  f"secret {length}; give --length for secrets of one length")
    if alphabet is None:
        used = {c for _, secret in secrets for c in secret}
        alphabet = next((a for a in STANDARD_ALPHABETS if used <= set(a)), None)
        if alphabet is None:
            raise CanaryError(f"{path}: secrets use characters {''.join(sorted(used))!r} outside the standard "
                              "alphabets; give --alphabet")
    space = _checked(str(path), "secret", lambda: SecretSpace(alphabet, length))
    for where, secret in secrets:
        if not space.contains(secret):
            raise CanaryError(f"{where}: field 'secret': {secret!r} is not {length} characters of {alphabet!r}")
    return space


def import_canaries(
    path: str | os.PathLike[str],
    *,
    template: str | None = None,
    alphabet: str | None = None,
    length: int | None = None,
) -> list[Canary]:
    """A team's own canaries, as they are: a CSV (with a header) or JSONL file, one canary per row with
    `secret`, `repetitions` (0: a never-inserted twin), and optionally `canary_id` and `template` or
    `prefix` (else `template` here). The secret space is `alphabet`**`length`, inferred when not given."""
    path = Path(path)
    if template is not None:
        _check_template(template)
    rows = _team_rows(path)
    if not rows:
        raise CanaryError(f"{path}: no canaries in the file")
    parsed = [(f"{path}, line {lineno}", _team_row(row, f"{path}, line {lineno}", template))
              for lineno, row in rows]
    space = _infer_space(path, [(where, p[1]) for where, p in parsed], alphabet, length)
    canaries: list[Canary] = []
    unique = _Unique()
    for (where, (row_template, secret, reps, canary_id)), (lineno, _) in zip(parsed, rows, strict=True):
        canary_id = canary_id or f"{'canary' if reps else 'twin'}-{lineno:05d}"
        canary = Canary(canary_id, row_template, secret, reps, space)
        unique.check(canary, where, lineno)
        canaries.append(canary)
    return canaries


def insert_canaries(
    records: list[dict[str, Any]], canaries: Sequence[Canary], *, seed: int = 0
) -> list[dict[str, Any]]:
    """A new list: `records` in their order, plus `repetitions` copies of each inserted canary at seeded
    random positions (as fresh ``{"text": canary.text}`` records); twins are never inserted."""
    copies = [c.text for c in canaries if c.inserted for _ in range(c.repetitions)]
    rng = random.Random(seed)
    rng.shuffle(copies)
    total = len(records) + len(copies)
    slots = set(rng.sample(range(total), len(copies)))
    out: list[dict[str, Any]] = []
    rec_iter, copy_iter = iter(records), iter(copies)
    for position in range(total):
        out.append({"text": next(copy_iter)} if position in slots else next(rec_iter))
    return out
