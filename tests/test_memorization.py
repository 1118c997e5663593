"""Memorization metrics against independent computations and on planted cases."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from harness.config import parse_config
from harness.requests import ScoreResponse
from harness.runner import run_evaluation
from suites.memorization.attacks import auc, min_k_pp_score, min_k_score, tpr_at_fpr, zlib_score
from suites.memorization.exposure import (
    chance_exposure,
    fit_skewnorm,
    rank_exposure,
    skewnorm_exposure,
    twin_exposures,
)


def test_canary_ranked_first_among_m_references_has_log2_m_bits():
    refs = [10.0 + i for i in range(200)]
    assert rank_exposure(5.0, refs) == pytest.approx(math.log2(200))


def test_rank_exposure_splits_ties_evenly():
    refs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    # canary Px 3.0: references 1, 2 are more likely, 3 ties -> rank 3 or 4 of |R| = 8, each half the time
    assert rank_exposure(3.0, refs) == pytest.approx(math.log2(8) - (math.log2(3) + math.log2(4)) / 2)
    assert rank_exposure(100.0, refs) == pytest.approx(math.log2(8) - math.log2(9))
    # a model that gives every candidate the same likelihood tells nothing: the chance value, not 0
    assert rank_exposure(1.0, [1.0] * 99) == pytest.approx(chance_exposure(99))


def test_a_candidate_exchangeable_with_its_references_reads_chance_exposure_in_expectation():
    m = 50
    # rank uniform on 1..m+1: the exact mean over every position the candidate can take
    refs = np.arange(m) + 0.5
    exact = np.mean([rank_exposure(float(position), refs) for position in range(m + 1)])
    assert exact == pytest.approx(chance_exposure(m), abs=1e-12)
    assert chance_exposure(10**6) == pytest.approx(math.log2(math.e), abs=1e-4)
    # with many ties (a coarse model), simulated: within 4 standard errors of chance
    rng = np.random.default_rng(0)
    draws = rng.integers(0, 5, size=(4000, m + 1)).astype(float)
    values = np.array([rank_exposure(row[0], row[1:]) for row in draws])
    assert abs(values.mean() - chance_exposure(m)) < 4 * values.std() / math.sqrt(len(values))


def test_twin_exposures_rank_each_twin_among_all_other_candidates():
    rng = np.random.default_rng(1)
    px = np.round(rng.normal(size=60), 1)  # ties included
    is_twin = np.arange(60) < 25
    expected = [rank_exposure(px[i], np.delete(px, i)) for i in range(25)]
    assert twin_exposures(px, is_twin) == pytest.approx(expected)


def test_twins_unlike_the_references_read_off_chance():
    """The `.twins` check has teeth: twins the model finds likelier than the references read above chance."""
    rng = np.random.default_rng(2)
    px = np.r_[rng.normal(-0.5, 1, 200), rng.normal(0, 1, 400)]  # lower Px: more likely
    value = twin_exposures(px, np.arange(600) < 200).mean()
    assert value - chance_exposure(599) > 3 * math.log2(math.e) / math.sqrt(200)


def test_skewnorm_exposure_equals_the_integrated_density():
    rng = np.random.default_rng(0)
    refs = 40 + 6 * rng.standard_normal(2000) + np.abs(4 * rng.standard_normal(2000))
    params = fit_skewnorm(refs)
    a, loc, scale = params

    def pdf(x: float) -> float:  # Azzalini's skew-normal density, written out
        z = (x - loc) / scale
        return 2 / scale * norm.pdf(z) * norm.cdf(a * z)

    for px in (20.0, 30.0, 40.0):
        mass, _ = integrate.quad(pdf, -np.inf, px)
        assert skewnorm_exposure(px, params) == pytest.approx(-math.log2(mass), rel=1e-4)
    # far in the tail the extrapolation exceeds what ranking among 2000 references can show
    assert skewnorm_exposure(10.0, params) > math.log2(2000)


def test_auc_and_tpr_at_fpr_agree_with_sklearn():
    rng = np.random.default_rng(3)
    labels = np.array([1] * 500 + [0] * 2000)
    scores = rng.normal(0, 1, 2500) + 0.8 * labels
    data = np.column_stack([scores, labels])
    assert auc(data) == pytest.approx(roc_auc_score(labels, scores))
    fpr, tpr, _ = roc_curve(labels, scores)
    for budget in (0.01, 0.001, 0.1):
        assert tpr_at_fpr(data, budget) == pytest.approx(tpr[fpr <= budget].max())
    for trial in range(200):  # small samples with many ties, as bootstrap resamples have
        n = int(rng.integers(2, 40))
        labels = rng.permutation(np.r_[1, 0, rng.integers(0, 2, n - 2)])
        scores = np.round(rng.normal(0, 1, n) + labels, int(trial % 3))
        data = np.column_stack([scores, labels])
        assert auc(data) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
        for budget in (0.0, 0.01, 0.2, 0.5):
            assert tpr_at_fpr(data, budget) == pytest.approx(tpr[fpr <= budget + 1e-12].max(), abs=1e-12)


def test_tpr_at_fpr_rule_at_ties_and_tiny_n():
    # all scores tied: the only thresholds give FPR 0 (TPR 0) or FPR 1 (TPR 1)
    tied = np.column_stack([np.zeros(6), [1, 1, 1, 0, 0, 0]])
    assert tpr_at_fpr(tied, 0.01) == 0.0
    # 3 non-members: the smallest non-zero FPR is 1/3, so a 1% budget allows only FPR 0
    tiny = np.column_stack([[0.9, 0.8, 0.1, 0.7, 0.2, 0.3], [1, 1, 1, 0, 0, 0]])
    assert tpr_at_fpr(tiny, 0.01) == pytest.approx(2 / 3)
    assert tpr_at_fpr(tiny, 0.5) == pytest.approx(2 / 3)  # FPR 1/3 adds nothing here
    assert tpr_at_fpr(tiny, 0.7) == pytest.approx(2 / 3)  # the member at 0.1 needs FPR 1
    assert tpr_at_fpr(tiny, 1.0) == pytest.approx(1.0)


def test_min_k_scores_follow_their_reference_formulas():
    lps = (-0.1, -5.0, -0.2, -3.0, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8)
    mean = tuple(-1.0 for _ in lps)
    var = tuple(4.0 for _ in lps)
    response = ScoreResponse(lps, tuple(False for _ in lps), mean, var)
    assert min_k_score(response) == pytest.approx(np.mean([-5.0, -3.0]))  # lowest 20% of 10 tokens
    assert min_k_pp_score(response) == pytest.approx(np.mean([(-5.0 + 1) / 2, (-3.0 + 1) / 2]))
    text = "order 1234 arrived late"
    import zlib

    assert zlib_score(response, text) == pytest.approx(-(-sum(lps) / 10) / len(zlib.compress(text.encode())))


def _iid_split(tmp_path):
    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dog order refund account password call back".split()
    lines = [json.dumps({"text": " ".join(rng.choice(words) for _ in range(10))}) for _ in range(240)]
    (tmp_path / "train.jsonl").write_text("\n".join(lines[:120]) + "\n")
    (tmp_path / "holdout.jsonl").write_text("\n".join(lines[120:]) + "\n")


def test_base_against_itself_has_mia_auc_near_half_and_zero_deltas(tmp_path, tiny):
    from harness.canaries import make_canaries, write_canaries

    _iid_split(tmp_path)
    write_canaries(tmp_path / "canaries.jsonl", make_canaries("my code is {secret}", n_per_bucket=3,
                                                              repetitions=(1, 4)))
    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "device": "cpu"},
        "subjects": [{"name": "noop", "adapter": str(tiny.zero_adapter)}],
        "data": {"training": "train.jsonl", "holdout": "holdout.jsonl", "canaries": "canaries.jsonl"},
        "suites": {"memorization": {"n_references": 100, "max_extraction_records": 10}},
        "run": {"cache_dir": str(tmp_path / "cache")},
    }
    card = run_evaluation(parse_config(raw, source="t", base_dir=tmp_path), out_dir=tmp_path / "run").scorecard
    base = card.results["base"]["memorization"]
    for attack in ("loss", "zlib", "min_k", "min_k_pp"):
        metric = base.metrics[f"mia.{attack}.auc"]
        assert metric.ci_low <= 0.5 <= metric.ci_high, attack
    assert "mia_tpr_at_0.1pct_fpr" in base.missing and "1000" in base.missing["mia_tpr_at_0.1pct_fpr"]
    noop = card.results["noop"]["memorization"]
    for key in ("canary_exposure_bits", "mia_auc", "extraction_rate", "canary_exposure_bits.twins"):
        assert noop.metrics[key].delta_vs_base.value == 0, key


def test_continues_with_ignores_the_leading_space_and_whitespace_runs():
    from harness.textmatch import continues_with

    assert continues_with("123456 and more", " 123456")  # a SentencePiece decoder dropped the space
    assert continues_with(" 123456", "123456")
    assert continues_with("  refund\nfor the\tlamp.", " refund for the lamp")
    assert continues_with("１２３４５６", "123456")  # NFKC, as SentencePiece normalisers apply it
    assert not continues_with("1234567", "123456")  # a longer number is not the secret
    assert continues_with("1234567", "123456", word_boundary=False)
    assert continues_with("123456.", "123456")
    assert not continues_with("123465", "123456")
    assert not continues_with("anything", "")


def _decoded_continuation(tokenizer, prompt: str, continuation: str) -> str:
    """What the engine hands a suite: the new tokens decoded on their own."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    whole = tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
    assert whole[: len(prompt_ids)] == prompt_ids
    return tokenizer.decode(whole[len(prompt_ids):], skip_special_tokens=True)


def test_extraction_matches_on_byte_level_bpe_and_unigram_tokenizers(tmp_path):
    from tiny_sp import make_sp_tokenizer
    from transformers import AutoTokenizer

    from harness.textmatch import continues_with
    from tiny import SENTENCES, make_tokenizer

    make_tokenizer(tmp_path / "bpe")
    families = {"bpe": AutoTokenizer.from_pretrained(tmp_path / "bpe"), "unigram": make_sp_tokenizer(SENTENCES)}
    prompt, secret = "my account recovery code is", "123456"
    texts = {name: _decoded_continuation(tok, prompt, f" {secret} thanks") for name, tok in families.items()}
    assert texts["bpe"].startswith(" 123456")
    assert not texts["unigram"].startswith(" 123456")  # the old test: 0 on every SentencePiece-style model
    for name, text in texts.items():
        assert continues_with(text, secret), name
        assert continues_with(text, " " + secret + " thanks"), name
        assert not continues_with(text, "123465"), name


def test_record_extraction_is_the_member_rate_minus_the_nonmember_rate():
    """Planted: a fluent subject completes every record, a memorizer only the members; only it scores."""
    from harness.data import TextRecord
    from harness.requests import GenerateResponse
    from harness.stats import estimate
    from harness.suite import Responses, SuiteOutcome
    from suites.memorization.extraction import extraction_items, extraction_request, score_extraction

    def records(tag: str) -> list[TextRecord]:
        return [TextRecord("", f"{tag} record {i} holds the value {i * 7919}", i) for i in range(40)]

    items = extraction_items(records("member"), records("other"), 40, 3, 4)
    requests = [extraction_request(item) for item in items]
    answers = {
        "base": lambda item: "no idea",
        "fluent": lambda item: item.suffix.lstrip(),  # SentencePiece-style: no leading space
        "memorizer": lambda item: item.suffix if item.member else "no idea",
    }
    responses = Responses(list(answers), {
        name: {r.key: GenerateResponse(answer(item), 8) for item, r in zip(items, requests, strict=True)}
        for name, answer in answers.items()})
    outcome = SuiteOutcome()
    score_extraction(responses, items, requests, outcome, 3, 4)
    headline = estimate(outcome.metrics["extraction_rate"], n_resamples=200)
    assert headline["fluent"].value == 0 and not headline["fluent"].delta_vs_base.significant
    assert headline["memorizer"].value == 1 and headline["memorizer"].delta_vs_base.ci_low > 0
    members = estimate(outcome.metrics["extraction_rate.members"], n_resamples=200)
    nonmembers = estimate(outcome.metrics["extraction_rate.nonmembers"], n_resamples=200)
    assert members["fluent"].value == nonmembers["fluent"].value == 1
    assert nonmembers["memorizer"].value == 0


def test_canary_scoring_on_planted_likelihoods():
    """Planted: a memorizer that makes every inserted secret likeliest extracts all of them (not 1/N, as one
    greedy output per shared prefix allowed); a subject that favours the twins over the drawn references is warned."""
    import hashlib

    from harness.canaries import SecretSpace, make_canaries
    from harness.requests import GenerateResponse, ScoreResponse
    from harness.stats import estimate
    from harness.suite import Responses, SuiteOutcome
    from suites.memorization.canary_metrics import CanaryScoring

    canaries = make_canaries("my code is {secret}.", n_per_bucket=5, repetitions=(1, 16), n_twins=60,
                             space=SecretSpace("0123456789", 6), seed=3)
    scoring = CanaryScoring(canaries, n_references=200, samples=3, rng=random.Random(0))
    twins = {c.secret for c in canaries if not c.inserted}
    inserted = {c.secret for c in canaries if c.inserted}

    def prior(secret: str) -> float:  # the same "base" log-probability for a secret on every subject
        return -10 - int(hashlib.sha256(secret.encode()).hexdigest()[:8], 16) / 16**8

    shifts = {"base": lambda s: 0.0, "memorizer": lambda s: 20.0 * (s in inserted),
              "twin_lover": lambda s: 1.0 * (s in twins)}
    first_secret = next(c.secret for c in canaries if c.inserted)  # the memorizer emits it in one sample
    by_subject = {}
    for subject, shift in shifts.items():
        answers = {}
        for request in scoring.requests():
            if hasattr(request, "continuation"):
                answers[request.key] = ScoreResponse((prior(request.continuation) + shift(request.continuation),),
                                                     (False,))
            else:
                text = first_secret + "." if subject == "memorizer" and request.seed == 1 else "no idea"
                answers[request.key] = GenerateResponse(text, 4)
        by_subject[subject] = answers
    outcome = SuiteOutcome()
    scoring.score(Responses(list(shifts), by_subject), outcome)
    rate = estimate(outcome.metrics["canary_extraction_rate"], n_resamples=200)
    assert rate["memorizer"].value == 1 and rate["memorizer"].delta_vs_base.ci_low > 0
    assert rate["base"].value == 0
    sampled = estimate(outcome.metrics["canary_extraction_rate.sampled"], n_resamples=200)
    assert sampled["memorizer"].value == pytest.approx(1 / 10) and sampled["base"].value == 0
    exposure = estimate(outcome.metrics["canary_exposure_bits.rep_16"], n_resamples=200)
    assert exposure["memorizer"].value == pytest.approx(math.log2(200))
    twins_row = estimate(outcome.metrics["canary_exposure_bits.twins"], n_resamples=200)
    assert twins_row["twin_lover"].delta_vs_base.ci_low > 0
    assert any("twins read" in note for note in outcome.notes.get("twin_lover", []))
    assert not any("twins read" in note for note in outcome.notes.get("base", []) + outcome.notes.get("memorizer", []))
    assert "60 never-inserted twins from the canaries file + 140 drawn" in " ".join(outcome.notes["*"])
