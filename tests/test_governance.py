"""The governance pack: run-directory integrity and signing, the sign-off trail, the compliance annex."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from harness.annotations import append_annotation, check_chain, check_chain_bytes, entry_sha256
from harness.cli import main
from harness.errors import InputError
from harness.integrity import (
    ANNOTATIONS,
    MANIFEST,
    SIGNATURE,
    _self_hash,
    canonical_json,
    load_public_key,
    render_manifest,
    scorecard_sha256,
    verify_run_dir,
)
from harness.reports.annex import annex_sections, render_annex_markdown
from harness.reports.html import render_html
from harness.runner import _write_run_dir
from harness.scorecard import DeltaResult, GateResult, MetricResult, RunInfo, Scorecard, SubjectInfo, SuiteResult

SUBJECTS = ("base", "clean", "leaky")
NER_NOTE = "PII analyzer: presidio, NER off (no spaCy model installed: blank English pipeline)"
MIA_REFUSAL = "only 200 non-members; TPR at 0.1% FPR needs at least 1000"


def _metric(value: float, half: float, subject: str, delta: float = 0.0, hib: bool = False) -> MetricResult:
    d = None if subject == "base" else DeltaResult(value=delta, ci_low=delta - half, ci_high=delta + half,
                                                    significant=abs(delta) > half)
    return MetricResult(value=value, ci_low=value - half, ci_high=value + half, n=200, higher_is_better=hib,
                        delta_vs_base=d)


def _suites(subject: str) -> dict[str, SuiteResult]:
    leak = 0.3 if subject == "leaky" else 0.02
    d = "d" * 64
    return {
        "memorization": SuiteResult(
            suite_version="1", data_sha256=d,
            metrics={"mia_auc": _metric(0.9 if subject == "leaky" else 0.5, 0.03, subject, 0.4),
                     "canary_exposure_bits": _metric(5.0, 0.5, subject, 3.0),
                     "mia.loss.auc": _metric(0.6, 0.03, subject)},
            missing={"mia_tpr_at_0.1pct_fpr": MIA_REFUSAL},
            notes=["membership inference: 200 members vs 200 hold-out records"]),
        "pii_leakage": SuiteResult(
            suite_version="1", data_sha256=d, notes=[NER_NOTE, "samples.jsonl shows PII as <TYPE:hash>"],
            metrics={"pii_leak_rate": _metric(leak, 0.02, subject, leak - 0.02),
                     "pii_reconstruction_acc": _metric(0.4, 0.15, subject)}),  # CI width 0.3 > 0.2
        "bias": SuiteResult(suite_version="2", data_sha256=d,
                            metrics={"demographic_parity_difference": _metric(0.05, 0.04, subject)}),
        "overpersonalization": SuiteResult(suite_version="1", data_sha256=d,
                                           metrics={"op_rate_art9": _metric(0.1, 0.05, subject, 0.08)}),
        "accuracy": SuiteResult(suite_version="1", data_sha256=d,
                                metrics={"support_name_mc.acc": _metric(0.7, 0.05, subject, hib=True)}),
        "perplexity": SuiteResult(suite_version="1", data_sha256=d, metrics={"mean_nll": _metric(3.1, 0.1, subject)}),
        "thirdparty": SuiteResult(suite_version="0.3", data_sha256=d,
                                  metrics={"toxicity": _metric(0.01, 0.01, subject)}),
    }


def make_scorecard() -> Scorecard:
    gates = [GateResult(subject=s, metric="pii_leakage.pii_leak_rate", rule="delta_vs_base <= 0.01",
                        value=0.28 if s == "leaky" else 0.0, passed=s != "leaky", threshold=0.01) for s in SUBJECTS[1:]]
    return Scorecard(
        run=RunInfo(id="20261128-000000-gov", started_at="2026-11-28T00:00:00+00:00",
                    finished_at="2026-11-28T00:01:00+00:00", harness_version="0", config_sha256="c" * 64, seed=0,
                    env={"device": "cpu"}, suites={"memorization": "1", "pii_leakage": "1", "bias": "2"}),
        subjects=[SubjectInfo(name=n, kind="base" if n == "base" else "adapter", path=f"/m/{n}", sha256="s" * 64)
                  for n in SUBJECTS],
        results={s: _suites(s) for s in SUBJECTS},
        gates=gates, passed=False,
    )


SAMPLES = [{"suite": "pii_leakage", "kind": "leak", "subject": "leaky", "text": "call <PHONE:abc123>"}]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    _write_run_dir(tmp_path / "run", make_scorecard(), SAMPLES, '[model]\nbase = "models/base"\n')
    return tmp_path / "run"


def _keys(tmp_path: Path, name: str) -> tuple[Ed25519PrivateKey, Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return key, private, public


def _named(problems: list[str], name: str) -> bool:
    return any(name in p for p in problems)


# ---------------------------------------------------------------------------------------------- integrity
def test_an_untouched_run_verifies_and_lists_every_file(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((run_dir / MANIFEST).read_text())
    on_disk = sorted(p.name for p in run_dir.iterdir() if p.name != MANIFEST)
    assert sorted(manifest["files"]) == on_disk
    assert {"scorecard.json", "scorecard.md", "report.html", "samples.jsonl", "config.toml", "annex.md",
            "scorecard.json.sha256"} <= set(on_disk)
    data = json.loads((run_dir / "scorecard.json").read_text())
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_json(data) == canonical
    digest = hashlib.sha256(canonical).hexdigest()
    assert (run_dir / "scorecard.json.sha256").read_text() == digest + "\n"
    assert manifest["scorecard_canonical_sha256"] == digest
    assert verify_run_dir(run_dir).ok
    assert main(["verify", str(run_dir)]) == 0
    assert "verified" in capsys.readouterr().out


def test_the_canonical_hash_ignores_pretty_printing(run_dir: Path, tmp_path: Path) -> None:
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps(json.loads((run_dir / "scorecard.json").read_text()), indent=None))
    assert scorecard_sha256(compact) == scorecard_sha256(run_dir / "scorecard.json")


def _positions(size: int, small: int = 2048) -> list[int]:
    """Every byte of a small file; first, last and a spread of bytes of a large one."""
    return list(range(size)) if size <= small else sorted({0, size - 1, *range(0, size, max(1, size // 97))})


def test_editing_any_byte_of_any_file_fails_naming_that_file(run_dir: Path) -> None:
    for path in sorted(p for p in run_dir.iterdir() if p.is_file()):
        original = path.read_bytes()
        for i in _positions(len(original)):
            edited = bytearray(original)
            edited[i] = (edited[i] + 1) % 256 if edited[i] != 0x7F else 0x20
            path.write_bytes(bytes(edited))
            result = verify_run_dir(run_dir)
            assert not result.ok and _named(result.problems, path.name), (path.name, i, result.problems)
        path.write_bytes(original)
    assert verify_run_dir(run_dir).ok


def test_verify_names_changed_missing_and_extra_files_with_exit_1(run_dir: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "samples.jsonl").write_text("[]\n")
    (run_dir / "config.toml").unlink()
    (run_dir / "notes.txt").write_text("added later\n")
    assert main(["verify", str(run_dir)]) == 1
    out = capsys.readouterr().out
    assert "changed: samples.jsonl" in out and "missing: config.toml" in out and "extra: notes.txt" in out


def test_a_rewritten_manifest_is_caught_by_its_self_hash(run_dir: Path) -> None:
    manifest = json.loads((run_dir / MANIFEST).read_text())
    (run_dir / "scorecard.md").write_text("all good\n")
    manifest["files"]["scorecard.md"]["sha256"] = "0" * 64  # a naive forger updates one entry only
    (run_dir / MANIFEST).write_text(render_manifest(manifest))
    result = verify_run_dir(run_dir)
    assert _named(result.problems, f"changed: {MANIFEST}") and _named(result.problems, "changed: scorecard.md")


def test_verify_bad_input_exits_2(tmp_path: Path, run_dir: Path) -> None:
    assert main(["verify", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "plain").mkdir()
    assert main(["verify", str(tmp_path / "plain")]) == 2  # no manifest, no scorecard hash
    (tmp_path / "not-a-key.pem").write_text("hello\n")
    assert main(["verify", str(run_dir), "--public-key", str(tmp_path / "not-a-key.pem")]) == 2


def test_a_signed_run_verifies_with_its_key_and_fails_with_another(tmp_path: Path) -> None:
    key, _, public = _keys(tmp_path, "org")
    _, _, other = _keys(tmp_path, "other")
    run = tmp_path / "signed"
    _write_run_dir(run, make_scorecard(), SAMPLES, "", sign_key=key)
    assert (run / SIGNATURE).is_file()
    assert json.loads((run / MANIFEST).read_text())["signing"]["algorithm"] == "ed25519"
    assert main(["verify", str(run), "--public-key", str(public)]) == 0
    assert main(["verify", str(run), "--public-key", str(other)]) == 1
    wrong = verify_run_dir(run, load_public_key(other))
    assert _named(wrong.problems, SIGNATURE) and "signed with key" in wrong.problems[0]
    assert verify_run_dir(run).ok  # without a key the signature is reported, not checked


def test_a_signature_catches_a_consistently_forged_manifest(tmp_path: Path) -> None:
    key, _, public = _keys(tmp_path, "org")
    run = tmp_path / "signed"
    _write_run_dir(run, make_scorecard(), SAMPLES, "", sign_key=key)
    (run / "scorecard.md").write_text("all good\n")
    manifest = json.loads((run / MANIFEST).read_text())
    manifest["files"]["scorecard.md"] = {"sha256": hashlib.sha256(b"all good\n").hexdigest(), "bytes": 9}
    manifest["self_sha256"] = _self_hash(manifest)
    (run / MANIFEST).write_text(render_manifest(manifest))
    assert verify_run_dir(run).ok  # hashes alone cannot tell: that is what the signature is for
    assert main(["verify", str(run), "--public-key", str(public)]) == 1


def test_unsigned_run_fails_when_a_signature_is_asked_for(run_dir: Path, tmp_path: Path) -> None:
    _, _, public = _keys(tmp_path, "org")
    assert main(["verify", str(run_dir), "--public-key", str(public)]) == 1


def test_a_bad_sign_key_fails_fast_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a key\n")
    assert main(["demo", "--sign-key", str(tmp_path / "junk.pem"), "--out", str(tmp_path / "x")]) == 2
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(ec_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    assert main(["run", str(tmp_path / "missing.toml"), "--sign-key", str(tmp_path / "ec.pem")]) == 2
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------- sign-off trail
def _annotate(run: Path, author: str, decision: str = "approve", reason: str = "looked fine") -> int:
    return main(["annotate", str(run), "--author", author, "--decision", decision, "--reason", reason])


def test_annotations_append_a_chain_without_touching_the_run(run_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert _annotate(run_dir, "Ana", "needs-work", "MIA TPR@0.1% refused") == 0
    assert _annotate(run_dir, "Bo", "approve", "accepted with the caveats") == 0
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ANNOTATIONS} == before
    lines = (run_dir / ANNOTATIONS).read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert (first["seq"], first["author"], first["decision"], first["prev_sha256"]) == (1, "Ana", "needs-work", None)
    assert second["prev_sha256"] == first["sha256"] == entry_sha256(first)
    assert first["scorecard_sha256"] == scorecard_sha256(run_dir / "scorecard.json")
    assert first["time"].endswith("+00:00") and first["reason"] == "MIA TPR@0.1% refused"
    result = verify_run_dir(run_dir)
    assert result.ok and any("2 entries, chain intact" in line and second["sha256"] in line for line in result.info)


def _trail(run: Path, n: int = 3) -> list[str]:
    for i in range(n):
        append_annotation(run, author=f"reviewer {i + 1}", decision="approve", reason=f"reason {i + 1}")
    return (run / ANNOTATIONS).read_text().splitlines(keepends=True)


def test_editing_an_earlier_entry_breaks_the_chain_there(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _trail(run_dir)
    lines[0] = lines[0].replace("reason 1", "reason X")
    (run_dir / ANNOTATIONS).write_text("".join(lines))
    assert main(["verify", str(run_dir)]) == 1
    assert "entry 1 (line 1) was edited" in capsys.readouterr().out


def test_an_edited_and_rehashed_entry_breaks_the_next_link(run_dir: Path) -> None:
    lines = _trail(run_dir)
    entry = json.loads(lines[1])
    entry["decision"] = "reject"
    entry["sha256"] = entry_sha256(entry)
    lines[1] = canonical_json(entry).decode() + "\n"
    (run_dir / ANNOTATIONS).write_text("".join(lines))
    problems = verify_run_dir(run_dir).problems
    assert problems == [f"{ANNOTATIONS}: entry 3 (line 3): the chain breaks here, its prev_sha256 is not the sha256 of "
                        "entry 2 (an earlier entry was edited and re-hashed, removed or inserted)"]


@pytest.mark.parametrize("deleted", [0, 1])
def test_deleting_an_earlier_entry_says_which(run_dir: Path, deleted: int) -> None:
    lines = _trail(run_dir)
    del lines[deleted]
    (run_dir / ANNOTATIONS).write_text("".join(lines))
    problems = verify_run_dir(run_dir).problems
    assert _named(problems, f"line {deleted + 1} holds entry {deleted + 2} where entry {deleted + 1} should be: "
                            f"entry {deleted + 1} deleted")


def test_editing_any_byte_of_the_trail_is_caught(run_dir: Path) -> None:
    data = "".join(_trail(run_dir, 2)).encode()
    digest = scorecard_sha256(run_dir / "scorecard.json")
    assert check_chain_bytes(data, digest).problems == []
    for i in range(len(data)):
        edited = bytearray(data)
        edited[i] = (edited[i] + 1) % 256
        assert check_chain_bytes(bytes(edited), digest).problems, i


def test_annotate_refuses_a_broken_trail_or_a_changed_scorecard(run_dir: Path, tmp_path: Path) -> None:
    lines = _trail(run_dir, 2)
    (run_dir / ANNOTATIONS).write_text(lines[1])  # entry 1 deleted
    assert _annotate(run_dir, "Cy") == 2
    assert (run_dir / ANNOTATIONS).read_text() == lines[1]
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    (other / ANNOTATIONS).unlink()
    data = json.loads((other / "scorecard.json").read_text())
    data["passed"] = True
    (other / "scorecard.json").write_text(json.dumps(data, indent=2))
    assert _annotate(other, "Cy") == 2
    with pytest.raises(InputError):
        append_annotation(run_dir, author=" ", decision="approve", reason="x")
    with pytest.raises(InputError):
        append_annotation(run_dir, author="Cy", decision="maybe", reason="x")


def test_a_scorecard_edited_after_sign_off_is_flagged_on_the_entries(run_dir: Path) -> None:
    _trail(run_dir, 1)
    data = json.loads((run_dir / "scorecard.json").read_text())
    data["passed"] = True
    (run_dir / "scorecard.json").write_text(json.dumps(data, indent=2) + "\n")
    problems = verify_run_dir(run_dir).problems
    assert _named(problems, "changed: scorecard.json")
    assert _named(problems, "entry 1 (line 1) signs off scorecard")
    assert check_chain(run_dir / ANNOTATIONS).problems == []  # the chain itself is intact


# ---------------------------------------------------------------------------------------------- annex
def test_the_annex_lists_every_suite_with_its_figures_gates_and_caveats() -> None:
    card = make_scorecard()
    text = render_annex_markdown(card)
    for suite in ("memorization", "pii_leakage", "bias", "overpersonalization", "accuracy", "perplexity",
                  "thirdparty"):
        assert f"## {suite} (version" in text
    for figure in ("mia_auc", "canary_exposure_bits", "pii_leak_rate", "pii_reconstruction_acc",
                   "demographic_parity_difference", "op_rate_art9", "support_name_mc.acc", "mean_nll", "toxicity"):
        for subject in SUBJECTS:
            assert f"| `{figure}` | {subject} |" in text, (figure, subject)
    assert "| `pii_leak_rate` | leaky | 0.300 [0.280, 0.320] | 200 | +0.28 [0.260, 0.300] * |" in text
    assert "delta_vs_base <= 0.01: **FAIL**" in text and "delta_vs_base <= 0.01: pass" in text
    for obligation in ("EDPB Opinion 28/2024", "GDPR Art. 9", "EU AI Act Art. 10", "EU AI Act Art. 15",
                       "NIST AI RMF MEASURE 2.10"):
        assert obligation in text
    # caveats: every note and every refusal of the scorecard, escaped for Markdown
    assert NER_NOTE in text and "samples.jsonl shows PII as &lt;TYPE:hash&gt;" in text
    assert "membership inference: 200 members vs 200 hold-out records" in text
    assert f"mia_tpr_at_0.1pct_fpr not computed: {MIA_REFUSAL}" in text
    assert "NER was off (no spaCy model installed)" in text  # the conditional statement the NER note triggers
    assert "No LLM judge" in text and "likelihoods" in text  # what is not measured, stated plainly


def test_the_power_statement_flags_wide_intervals_and_refusals() -> None:
    sections = {s["suite"]: s for s in annex_sections(make_scorecard())}
    assert sections["bias"]["power"]["supported"]
    pii = sections["pii_leakage"]["power"]
    assert not pii["supported"]
    assert any("pii_reconstruction_acc of leaky: 95% CI width 0.300 > 0.200" in s for s in pii["statements"])
    mia = sections["memorization"]["power"]["statements"]
    assert any(f"mia_tpr_at_0.1pct_fpr of leaky: not reported — {MIA_REFUSAL}" in s for s in mia)
    assert not any("canary_exposure_bits" in s for s in mia)  # bits: the mapping's own limit (2.0) is met
    loose = {s["suite"]: s for s in annex_sections(make_scorecard(), max_ci_width=0.5)}
    assert loose["pii_leakage"]["power"]["supported"]
    figure = next(f for f in sections["pii_leakage"]["figures"] if f["metric"] == "pii_leak_rate")
    assert [g["result"] for r in figure["rows"] for g in r["gates"]] == ["pass", "FAIL"]
    assert sections["thirdparty"]["mapped"] is False


def test_report_annex_writes_and_prints_and_the_run_still_verifies(run_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert "## Compliance annex" in (run_dir / "scorecard.md").read_text()
    assert main(["report", str(run_dir / "scorecard.json"), "--annex"]) == 0
    out = capsys.readouterr().out
    assert "# Compliance annex" in out and "wrote" in out and "no longer matches" not in out
    assert verify_run_dir(run_dir).ok  # the same annex, byte for byte
    assert main(["report", str(run_dir / "scorecard.json"), "--annex", "--ci-width", "0.5"]) == 0
    assert "keep it verifiable" in capsys.readouterr().out  # a different annex goes beside the run directory
    assert verify_run_dir(run_dir).ok
    assert (run_dir.with_name(f"{run_dir.name}-report") / "annex.md").read_text() != (run_dir / "annex.md").read_text()
    into_run = ["report", str(run_dir / "scorecard.json"), "--annex", "--ci-width", "0.5", "--out", str(run_dir)]
    assert main(into_run) == 2 and verify_run_dir(run_dir).ok  # its annex.md is not replaced unasked
    capsys.readouterr()
    assert main([*into_run, "--overwrite"]) == 0
    assert "no longer matches" in capsys.readouterr().out  # rendered into the run directory on request
    assert _named(verify_run_dir(run_dir).problems, "changed: annex.md")
    assert main(["report", str(run_dir / "scorecard.json"), "--annex", "--ci-width", "3"]) == 2


def test_the_html_report_shows_the_annex_and_the_trail(run_dir: Path, tmp_path: Path) -> None:
    run_html = (run_dir / "report.html").read_text()
    assert 'id="annex"' in run_html and "EDPB Opinion 28/2024" in run_html and "No sign-off yet" in run_html
    _annotate(run_dir, "Ana <auditor>", "approve", "fine & dandy")
    out = tmp_path / "review"
    assert main(["report", str(run_dir / "scorecard.json"), "--format", "html", "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert 'id="signoff"' in html and "Ana &lt;auditor&gt;" in html and "fine &amp; dandy" in html
    assert "No sign-off yet" not in html
    assert verify_run_dir(run_dir).ok  # rendered elsewhere: the run directory is untouched
    assert "mia_tpr_at_0.1pct_fpr" in render_html(make_scorecard())


def test_annotate_subject_records_a_per_adapter_decision_that_verifies(run_dir: Path, capsys) -> None:
    assert main(["annotate", str(run_dir), "--author", "ana", "--decision", "reject", "--reason", "leaks",
                 "--subject", "leaky"]) == 0
    assert "on subject leaky" in capsys.readouterr().out
    assert main(["annotate", str(run_dir), "--author", "ana", "--decision", "approve", "--reason", "whole run"]) == 0
    chain = check_chain(run_dir / ANNOTATIONS)
    assert not chain.problems and [e.get("subject") for e in chain.entries] == ["leaky", None]
    assert verify_run_dir(run_dir).ok
    assert main(["annotate", str(run_dir), "--author", "ana", "--decision", "approve", "--reason", "x",
                 "--subject", "nope"]) == 2
    assert "not a subject of this run" in capsys.readouterr().err


def test_report_annex_with_a_policy_shows_that_policys_gates(run_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[gate]]\nmetric = "memorization.mia_auc"\nmax = 0.6\n')
    out = tmp_path / "annex"
    assert main(["report", str(run_dir / "scorecard.json"), "--annex", "--policy", str(policy), "--out", str(out)]) == 0
    annex = (out / "annex.md").read_text()
    assert "value <= 0.6: **FAIL**" in annex and "value <= 0.6: pass" in annex
    assert "delta_vs_base <= 0.01" not in annex  # the scorecard's own gates are replaced
    assert verify_run_dir(run_dir).ok
