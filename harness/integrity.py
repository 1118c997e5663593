"""Tamper evidence for run directories: a canonical scorecard hash, a file manifest, optional Ed25519 signing.

Files a run writes, and how `ppeval verify` checks them:

- `scorecard.json.sha256`: one line, the sha256 hex digest of the scorecard's *canonical* JSON (sorted keys,
  no insignificant whitespace, UTF-8), so the hash names the content whatever the pretty-printing. It is not a
  `sha256sum` line: `sha256sum -c` would hash the pretty-printed bytes instead.
- `manifest.json`: every file of the run directory (sub-folders included) with its sha256 and size, the
  canonical scorecard hash, the signing key's fingerprint when signed, and `self_sha256` over its own canonical
  JSON; it is written last and in one fixed layout, so any edited byte of it is caught too.
- `manifest.json.sig` (with `--sign-key`): base64 of an Ed25519 signature over the bytes of manifest.json.

`annotations.jsonl` (the sign-off trail, `harness.annotations`) is left out of the manifest: it is appended to
after the run, by reviewers who do not hold the signing key, and is verified by its own hash chain instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError
from harness.io import atomic_write_text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
SCORECARD = "scorecard.json"
SCORECARD_HASH = "scorecard.json.sha256"
ANNOTATIONS = "annotations.jsonl"
#: files that are never listed in the manifest (itself, its signature, the append-only sign-off trail)
EXCLUDED = (ANNOTATIONS, MANIFEST, SIGNATURE)
MANIFEST_VERSION = 1


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the bytes every hash of JSON content is taken over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    """The sha256 hex digest of `data`."""
    return hashlib.sha256(data).hexdigest()


def scorecard_sha256(path: Path) -> str:
    """The canonical hash of a scorecard.json file; an unreadable file is an `InputError`."""
    try:
        return sha256_hex(canonical_json(json.loads(Path(path).read_text(encoding="utf-8"))))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or NaN/inf that canonical JSON refuses
        raise InputError(f"{path}: cannot read a scorecard ({exc})") from None


def file_digest(path: Path) -> str:
    """Hash a file in chunks (samples.jsonl can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listed_files(run_dir: Path) -> list[str]:
    """Relative POSIX paths of every file under `run_dir`, except the excluded names at its top level."""
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                  if p.is_file() and p.relative_to(run_dir).as_posix() not in EXCLUDED)


def render_manifest(manifest: dict[str, Any]) -> str:
    """The one layout manifest.json is written in (verify compares bytes with it)."""
    return json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _self_hash(manifest: dict[str, Any]) -> str:
    """The manifest's hash over its canonical JSON without `self_sha256`."""
    return sha256_hex(canonical_json({k: v for k, v in manifest.items() if k != "self_sha256"}))


# ---------------------------------------------------------------------------------------------- keys
def public_key_sha256(key: Ed25519PublicKey) -> str:
    """Fingerprint of a public key: sha256 of its 32 raw bytes."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return sha256_hex(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key in PEM (e.g. `openssl genpkey -algorithm ed25519`); else `InputError`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise InputError(f"--sign-key {path}: cannot read ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"--sign-key {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"--sign-key {path}: expected an Ed25519 key, got {type(key).__name__}")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key in PEM (e.g. `openssl pkey -in key.pem -pubout`); else `InputError`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise InputError(f"--public-key {path}: cannot read ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"--public-key {path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"--public-key {path}: expected an Ed25519 key, got {type(key).__name__}")
    return key


# ---------------------------------------------------------------------------------------------- writing
def write_integrity(run_dir: Path, run_id: str, sign_key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
    """Write scorecard.json.sha256, then manifest.json over every other file, then the signature; call it last."""
    digest = scorecard_sha256(run_dir / SCORECARD)
    atomic_write_text(run_dir / SCORECARD_HASH, digest + "\n")
    files = {name: {"sha256": file_digest(run_dir / name), "bytes": (run_dir / name).stat().st_size}
             for name in _listed_files(run_dir)}
    signing = None
    if sign_key is not None:
        signing = {"algorithm": "ed25519", "public_key_sha256": public_key_sha256(sign_key.public_key()),
                   "signature_file": SIGNATURE}
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION, "algorithm": "sha256", "run_id": run_id,
        "scorecard_canonical_sha256": digest, "files": files, "excluded": list(EXCLUDED), "signing": signing,
    }
    manifest["self_sha256"] = _self_hash(manifest)
    text = render_manifest(manifest)
    atomic_write_text(run_dir / MANIFEST, text)
    if sign_key is not None:
        signature = sign_key.sign(text.encode("utf-8"))
        atomic_write_text(run_dir / SIGNATURE, base64.b64encode(signature).decode("ascii") + "\n")
    return manifest


# ---------------------------------------------------------------------------------------------- verifying
@dataclass
class Verification:
    """What `verify` found: problems name a file each; info lines are context (signature state, trail head)."""

    problems: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_manifest(run_dir: Path, out: Verification) -> dict[str, Any] | None:
    """The parsed manifest when it is intact in layout and self-hash; problems are recorded either way."""
    raw = (run_dir / MANIFEST).read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        out.problems.append(f"changed: {MANIFEST} (no longer valid JSON)")
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        out.problems.append(f"changed: {MANIFEST} (not a ppeval manifest)")
        return None
    if manifest.get("self_sha256") != _self_hash(manifest):
        out.problems.append(f"changed: {MANIFEST} (its content no longer matches its self_sha256)")
    elif render_manifest(manifest).encode("utf-8") != raw:
        out.problems.append(f"changed: {MANIFEST} (its bytes differ from the layout ppeval writes)")
    return manifest


def _check_files(run_dir: Path, manifest: dict[str, Any], out: Verification) -> None:
    """Each listed file present with its hash; no unlisted file."""
    listed: dict[str, Any] = manifest["files"]
    for name, entry in sorted(listed.items()):
        path = run_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            out.problems.append(f"changed: {MANIFEST} (lists {name!r}, outside the run directory)")
        elif not path.is_file():
            out.problems.append(f"missing: {name}")
        elif not isinstance(entry, dict) or file_digest(path) != entry.get("sha256"):
            out.problems.append(f"changed: {name}")
    for name in _listed_files(run_dir):
        if name not in listed:
            out.problems.append(f"extra: {name} (not in {MANIFEST})")


def _check_scorecard_hash(run_dir: Path, manifest: dict[str, Any] | None, out: Verification) -> str | None:
    """Recompute the canonical scorecard hash and compare it with the sidecar and the manifest."""
    try:
        digest = scorecard_sha256(run_dir / SCORECARD)
    except InputError:
        if (run_dir / SCORECARD).is_file():
            out.problems.append(f"changed: {SCORECARD} (no longer valid JSON)")
        return None
    sidecar = run_dir / SCORECARD_HASH
    recorded = sidecar.read_text(encoding="utf-8", errors="replace").strip() if sidecar.is_file() else None
    if recorded is not None and recorded != digest:
        out.problems.append(f"changed: {SCORECARD} (canonical sha256 {digest[:16]}… differs from "
                            f"{SCORECARD_HASH}: {recorded[:16]}…)")
    if manifest is not None and manifest.get("scorecard_canonical_sha256") not in (None, digest):
        out.problems.append(f"changed: {SCORECARD} (canonical sha256 differs from the one {MANIFEST} records)")
    return digest


def _check_signature(run_dir: Path, manifest: dict[str, Any] | None, public_key: Ed25519PublicKey | None,
                     out: Verification) -> None:
    """The Ed25519 signature over manifest.json, when a public key is given; otherwise only say what is there."""
    from cryptography.exceptions import InvalidSignature

    signing = manifest.get("signing") if manifest else None
    sig_path = run_dir / SIGNATURE
    if signing and not sig_path.is_file():
        out.problems.append(f"missing: {SIGNATURE} ({MANIFEST} says the run was signed)")
        return
    if not signing and sig_path.is_file() and manifest is not None:
        out.problems.append(f"extra: {SIGNATURE} ({MANIFEST} records no signing key)")
    if public_key is None:
        if sig_path.is_file():
            out.info.append(f"{SIGNATURE} present, not checked (pass --public-key to check it)")
        return
    if not sig_path.is_file():
        out.problems.append(f"missing: {SIGNATURE} (the run is not signed; --public-key asked for a signature)")
        return
    given = public_key_sha256(public_key)
    try:
        signature = base64.b64decode(sig_path.read_bytes().strip(), validate=True)
        public_key.verify(signature, (run_dir / MANIFEST).read_bytes())
    except (ValueError, InvalidSignature):
        expected = signing.get("public_key_sha256") if isinstance(signing, dict) else None
        why = (f"signed with key {str(expected)[:16]}…, the given key is {given[:16]}…" if expected not in (None, given)
               else "wrong key, or manifest.json or its signature changed")
        out.problems.append(f"changed: {SIGNATURE} (does not verify {MANIFEST} with the given public key: {why})")
        return
    out.info.append(f"signature: valid Ed25519 signature over {MANIFEST} (public key sha256 {given[:16]}…)")


def verify_run_dir(run_dir: Path, public_key: Ed25519PublicKey | None = None) -> Verification:
    """Recompute every hash of a run directory, its signature (with a key) and its sign-off chain."""
    from harness.annotations import check_chain

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a directory")
    if not (run_dir / MANIFEST).is_file() and not (run_dir / SCORECARD_HASH).is_file():
        raise InputError(f"{run_dir}: no {MANIFEST} or {SCORECARD_HASH}: not a run directory, or one written "
                         "before ppeval recorded integrity data")
    out = Verification()
    manifest = None
    if (run_dir / MANIFEST).is_file():
        manifest = _read_manifest(run_dir, out)
        if manifest is not None:
            _check_files(run_dir, manifest, out)
    else:
        out.problems.append(f"missing: {MANIFEST}")
    digest = _check_scorecard_hash(run_dir, manifest, out)
    _check_signature(run_dir, manifest, public_key, out)
    if (run_dir / ANNOTATIONS).is_file():
        chain = check_chain(run_dir / ANNOTATIONS, scorecard_sha256=digest)
        out.problems += [f"{ANNOTATIONS}: {p}" for p in chain.problems]
        if not chain.problems:
            out.info.append(chain.summary())
    return out
