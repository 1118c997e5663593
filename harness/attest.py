"""Results other tools can verify: an in-toto Statement v1 with the test-result predicate, optionally in a
signed DSSE envelope (the same Ed25519 key as the run manifest).

Written by hand because it is a few JSON fields and one signature over DSSE's pre-authentication encoding;
the in-toto and securesystemslib packages would add dependencies to the light gate install for that.
Specs: https://github.com/in-toto/attestation (spec/v1 statement, predicates/test-results.md) and
https://github.com/secure-systems-lab/dsse (envelope.md, protocol.md).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError
from harness.io import atomic_write_text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from harness.scorecard import GateResult, Scorecard

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is signed, so the type cannot be swapped under a signature."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _test_name(gate: GateResult) -> str:
    return f"{gate.subject}: {gate.metric} {gate.rule}"


def build_statement(scorecard: Scorecard, gates: list[GateResult], scorecard_sha256: str,
                    policy_sha256: str | None = None) -> dict[str, Any]:
    """The statement: subjects are each model subject (weights digest) and the scorecard (canonical JSON
    digest); the predicate lists the policy's gates passed, warned and failed per subject."""
    subjects = [{"name": f"model:{s.name}", "digest": {"sha256": s.sha256}} for s in scorecard.subjects]
    subjects.append({"name": "scorecard.json", "digest": {"sha256": scorecard_sha256}})
    failed = [_test_name(g) for g in gates if not g.passed and g.severity == "error"]
    warned = [_test_name(g) for g in gates if not g.passed and g.severity != "error"]
    configuration: list[dict[str, Any]] = [
        {"name": "config.toml", "digest": {"sha256": scorecard.run.config_sha256}}]
    if policy_sha256 is not None:
        configuration.append({"name": "policy.toml", "digest": {"sha256": policy_sha256}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "result": "FAILED" if failed else ("WARNED" if warned else "PASSED"),
            "configuration": configuration,
            "passedTests": [_test_name(g) for g in gates if g.passed],
            "warnedTests": warned,
            "failedTests": failed,
        },
    }


def envelope(statement: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope around the statement, signed over PAE(payloadType, payload)."""
    from harness.integrity import public_key_sha256

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode("ascii"),
            "signatures": [{"keyid": public_key_sha256(key.public_key()),
                            "sig": base64.b64encode(signature).decode("ascii")}]}


def write_attestation(path: Path, scorecard: Scorecard, gates: list[GateResult], scorecard_sha256: str,
                      *, policy_sha256: str | None = None, key: Ed25519PrivateKey | None = None) -> None:
    """Write the statement (or, with `key`, its signed DSSE envelope) as JSON."""
    statement = build_statement(scorecard, gates, scorecard_sha256, policy_sha256)
    document = envelope(statement, key) if key is not None else statement
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def check_attestation(path: Path, scorecard_sha256: str, key: Ed25519PublicKey | None) -> list[str]:
    """Problems with an attestation file against a run's scorecard digest (and the key, for an envelope)."""
    from cryptography.exceptions import InvalidSignature

    from harness.integrity import public_key_sha256

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON attestation ({exc})") from None
    problems: list[str] = []
    if "payloadType" in document:
        try:
            payload = base64.b64decode(document["payload"], validate=True)
            statement = json.loads(payload)
        except (KeyError, ValueError, binascii.Error):
            return [f"{path}: envelope payload is not base64 JSON"]
        if document.get("payloadType") != PAYLOAD_TYPE:
            problems.append(f"{path}: payloadType {document.get('payloadType')!r}, expected {PAYLOAD_TYPE}")
        if key is None:
            problems.append(f"{path}: signed envelope, but no --public-key to check it with")
        else:
            keyid = public_key_sha256(key)
            good = False
            for entry in document.get("signatures", []):
                try:
                    key.verify(base64.b64decode(entry["sig"]), pae(document["payloadType"], payload))
                    good = entry.get("keyid") in (None, "", keyid)
                except (InvalidSignature, KeyError, ValueError, binascii.Error):
                    continue
                if good:
                    break
            if not good:
                problems.append(f"{path}: no signature verifies with the given public key")
    else:
        statement = document
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"{path}: not an in-toto v1 test-result statement")
    digests = [s.get("digest", {}).get("sha256") for s in statement.get("subject", [])
               if s.get("name") == "scorecard.json"]
    if digests != [scorecard_sha256]:
        problems.append(f"{path}: names scorecard digest {digests[:1]}, the run's is {scorecard_sha256}")
    return problems
