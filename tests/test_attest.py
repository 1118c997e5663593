"""`--attest`: an in-toto Statement v1 with the test-result predicate, and its DSSE envelope, checked against the
spec's field names and types and verified with `cryptography` directly over the PAE bytes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from test_governance import SAMPLES, _keys, make_scorecard

from harness.cli import main
from harness.integrity import scorecard_sha256
from harness.runner import _write_run_dir
from tiny import write_run_config


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A run directory signed with an organisation key, with the key's private and public PEM files."""
    key, private, public = _keys(tmp_path, "org")
    _write_run_dir(tmp_path / "run", make_scorecard(), SAMPLES, '[model]\nbase = "m"\n', sign_key=key)
    return tmp_path / "run", private, public


POLICY = """
[[gate]]
metric = "pii_leakage.pii_leak_rate"
max_delta_vs_base = 0.01
"""


def _check_statement_shape(statement: dict) -> None:
    """The in-toto Statement v1 and test-result v0.1 fields, with their types."""
    assert set(statement) == {"_type", "subject", "predicateType", "predicate"}
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    assert isinstance(statement["subject"], list) and statement["subject"]
    for subject in statement["subject"]:
        assert isinstance(subject["name"], str)
        assert all(isinstance(v, str) and len(v) == 64 for v in subject["digest"].values())
    predicate = statement["predicate"]
    assert predicate["result"] in ("PASSED", "WARNED", "FAILED")
    assert isinstance(predicate["configuration"], list) and predicate["configuration"]
    for resource in predicate["configuration"]:
        assert isinstance(resource["name"], str) and isinstance(resource["digest"]["sha256"], str)
    for field in ("passedTests", "warnedTests", "failedTests"):
        assert all(isinstance(name, str) for name in predicate[field])


def test_gate_attest_writes_a_statement_naming_each_model_and_the_scorecard(signed, tmp_path: Path) -> None:
    run_dir, _, public = signed
    (tmp_path / "policy.toml").write_text(POLICY)
    out = tmp_path / "statement.json"
    assert main(["gate", str(run_dir / "scorecard.json"), "--policy", str(tmp_path / "policy.toml"),
                 "--attest", str(out)]) == 1
    statement = json.loads(out.read_text())
    _check_statement_shape(statement)
    names = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert names["scorecard.json"] == scorecard_sha256(run_dir / "scorecard.json")
    assert "model:leaky" in names and "model:base" in names
    assert statement["predicate"]["result"] == "FAILED"
    assert any(t.startswith("leaky: pii_leakage.pii_leak_rate") for t in statement["predicate"]["failedTests"])
    assert main(["verify", str(run_dir), "--attestation", str(out), "--public-key", str(public)]) == 0


def test_a_signed_envelope_verifies_independently_over_the_pae_bytes(signed, tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    run_dir, private, public = signed
    out = tmp_path / "envelope.json"
    main(["gate", str(run_dir / "scorecard.json"), "--policy", str(tmp_path / "policy.toml"), "--attest", str(out),
          "--sign-key", str(private)])
    envelope = json.loads(out.read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(envelope["payload"])
    _check_statement_shape(json.loads(payload))
    # DSSE protocol.md: PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal
    kind = envelope["payloadType"].encode()
    pae = b" ".join([b"DSSEv1", str(len(kind)).encode(), kind, str(len(payload)).encode(), payload])
    key = load_pem_public_key(public.read_bytes())
    key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), pae)  # raises if it does not verify
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), pae.replace(b"FAILED", b"PASSED"))
    assert main(["verify", str(run_dir), "--attestation", str(out), "--public-key", str(public)]) == 0


def test_verify_rejects_a_tampered_or_foreign_attestation(signed, tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    run_dir, private, public = signed
    _, _, other_public = _keys(tmp_path, "other")
    out = tmp_path / "envelope.json"
    main(["gate", str(run_dir / "scorecard.json"), "--policy", str(tmp_path / "policy.toml"), "--attest", str(out),
          "--sign-key", str(private)])
    assert main(["verify", str(run_dir), "--attestation", str(out), "--public-key", str(other_public)]) == 1
    envelope = json.loads(out.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["result"] = "PASSED"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    out.write_text(json.dumps(envelope))
    assert main(["verify", str(run_dir), "--attestation", str(out), "--public-key", str(public)]) == 1
    statement["subject"] = [{"name": "scorecard.json", "digest": {"sha256": "0" * 64}}]
    (tmp_path / "plain.json").write_text(json.dumps(statement))
    assert main(["verify", str(run_dir), "--attestation", str(tmp_path / "plain.json"),
                 "--public-key", str(public)]) == 1


def test_the_scorecard_records_each_fine_tunes_lineage(tmp_path: Path, tiny) -> None:
    import hashlib

    from harness.config import load_config
    from harness.runner import run_evaluation

    training = tmp_path / "train.jsonl"
    training.write_text('{"text": "the order arrived late"}\n{"text": "please reset my password"}\n')
    config = write_run_config(tmp_path, tiny, max_items=4, extra=f'[data]\ntraining = "{training}"\n')
    scorecard = run_evaluation(load_config(config), out_dir=tmp_path / "run").scorecard
    base, adapter = scorecard.subjects
    assert adapter.lineage["base_sha256"] == base.sha256 == base.lineage["model_sha256"]
    assert adapter.lineage["model_sha256"] == adapter.sha256 != base.sha256
    assert adapter.lineage["training_sha256"] == hashlib.sha256(training.read_bytes()).hexdigest()
    assert adapter.lineage["declared_base"]  # the adapter config's base_model_name_or_path
