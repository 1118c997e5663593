"""Memorization: canary exposure and extraction, k-extractable training records, membership inference.

Needs `data.training` and `data.holdout` (IID, never trained on); `data.canaries` adds the canary
metrics. Metric keys: `canary_exposure_bits` (+ `.rep_<k>`, `.twins`), `canary_exposure_skewnorm_bits`,
`canary_extraction_rate` (+ `.rep_<k>`, `.sampled`; see canary_metrics), `extraction_rate` (members -
non-members, + `.members`, `.nonmembers`; see extraction), `mia_auc`, `mia_tpr_at_1pct_fpr`, `mia_tpr_at_0.1pct_fpr`,
`mia.<attack>.<auc|tpr_at_1pct_fpr|tpr_at_0.1pct_fpr>`, `blind_baseline_auc`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from harness.canaries import Canary, read_canaries
from harness.data import TextRecord, read_text_records
from harness.errors import InputError, MissingData
from harness.requests import ScoreRequest
from harness.stats import Observations
from harness.suite import Responses, SuiteContext, SuiteOptions, SuiteOutcome, SuitePlan, file_sha256, parse_options
from suites.memorization.attacks import ATTACKS, attack_scores, auc, tpr_at_fpr
from suites.memorization.blind import blind_baseline_auc
from suites.memorization.canary_metrics import CanaryScoring
from suites.memorization.extraction import extraction_items, extraction_request, score_extraction
from suites.memorization.metrics_spec import METRICS

MIN_NONMEMBERS_FOR_TPR_0_1 = 1000


class MemorizationOptions(SuiteOptions):
    max_members: int = 1000  # training records sampled as members (non-members: as many hold-out records)
    n_references: int = 1000  # reference secrets per canary template: the file's twins, then drawn ones
    canary_samples: int = 16  # seeded samples from each canary prefix for `canary_extraction_rate.sampled`
    prefix_words: int = 32  # k of k-extractability, in whitespace words (tokenizer-independent)
    suffix_words: int = 32
    max_extraction_records: int = 200  # members, and as many hold-out records as the control


def _tpr_statistic(budget: float):
    return lambda data: tpr_at_fpr(data, budget)


class MemorizationSuite:
    """Did the fine-tune memorize its training data? Canaries, extraction, membership inference."""

    name: ClassVar[str] = "memorization"
    version: ClassVar[str] = "1"
    options_model: ClassVar[type[MemorizationOptions]] = MemorizationOptions
    metrics = METRICS  # declarations: metrics_spec.py

    def __init__(self, options: Mapping[str, Any], context: SuiteContext) -> None:
        self.options = parse_options(self.name, self.options_model, options)
        data = context.data
        if data.training is None or data.holdout is None:
            raise MissingData("suite memorization needs `data.training` and `data.holdout` (an IID hold-out)")
        self.canaries: list[Canary] = []
        if data.canaries is not None:
            try:
                self.canaries = read_canaries(data.canaries)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        canary_texts = {c.text for c in self.canaries}
        rng = random.Random(context.seed)
        limit = context.limit or self.options.max_members
        members = [r for r in read_text_records(data.training) if r.text not in canary_texts]
        members = list({r.text: r for r in members}.values())  # a record repeated in training counts once
        nonmembers = read_text_records(data.holdout)
        n = min(limit, self.options.max_members, len(members), len(nonmembers))
        self.members = sorted(rng.sample(members, n), key=lambda r: r.line)
        self.nonmembers = sorted(rng.sample(nonmembers, n), key=lambda r: r.line)
        self.records: list[TextRecord] = self.members + self.nonmembers
        self.labels = np.array([1] * n + [0] * n)
        self.mia_requests = [ScoreRequest(r.context, r.text, vocab_stats=True) for r in self.records]

        n_extract = min(self.options.max_extraction_records, context.limit or self.options.max_extraction_records)
        self.extractions = extraction_items(self.members, self.nonmembers, n_extract, self.options.prefix_words,
                                            self.options.suffix_words)
        self.extraction_requests = [extraction_request(e) for e in self.extractions]
        self.canary_scoring = (CanaryScoring(self.canaries, self.options.n_references, self.options.canary_samples,
                                             rng) if self.canaries else None)
        self.data_files = [p for p in (data.training, data.holdout, data.canaries) if p is not None]

    def plan(self) -> SuitePlan:
        requests = [*self.mia_requests, *self.extraction_requests]
        if self.canary_scoring is not None:
            requests += self.canary_scoring.requests()
        return SuitePlan(tuple(requests), file_sha256(*self.data_files))

    # ------------------------------------------------------------------ scoring
    def score(self, responses: Responses) -> SuiteOutcome:
        outcome = SuiteOutcome()
        if self.canary_scoring is not None:
            self.canary_scoring.score(responses, outcome)
        else:
            outcome.missing["canary_exposure_bits"] = "no `data.canaries` in the config"
        score_extraction(responses, self.extractions, self.extraction_requests, outcome, self.options.prefix_words,
                         self.options.suffix_words)
        self._score_mia(responses, outcome)
        return outcome

    def _score_mia(self, responses: Responses, outcome: SuiteOutcome) -> None:
        n_nonmembers = int((self.labels == 0).sum())
        if n_nonmembers == 0:
            outcome.missing["mia_auc"] = "no members or non-members"
            return
        scores: dict[str, dict[str, np.ndarray]] = {a: {} for a in ATTACKS}
        if any(responses.scored(s, r).vocab_mean is None for s in responses.subjects for r in self.mia_requests):
            del scores["min_k_pp"]  # a backend without vocabulary statistics (harness.backends.Capabilities)
            why = ("the backend returns no vocabulary statistics: Min-K%++ needs the whole next-token distribution, "
                   "which neither vLLM nor any OpenAI-compatible API gives")
            for statistic in ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"):
                if statistic != "tpr_at_0.1pct_fpr" or n_nonmembers >= MIN_NONMEMBERS_FOR_TPR_0_1:
                    outcome.missing[f"mia.min_k_pp.{statistic}"] = why
        for subject in responses.subjects:
            rows = [
                attack_scores(responses.scored(subject, req), responses.scored("base", req), record.text)
                for record, req in zip(self.records, self.mia_requests, strict=True)
            ]
            for attack in scores:  # the base's own ref_base scores are all 0: AUC 0.5 by construction
                scores[attack][subject] = np.column_stack([[r[attack] for r in rows], self.labels])
        budgets = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}
        for attack in scores:
            if not scores[attack]:
                continue
            outcome.metrics[f"mia.{attack}.auc"] = Observations(
                scores[attack], higher_is_better=False, statistic=auc, strata=self.labels)
            for key, budget in budgets.items():
                if budget == 0.001 and n_nonmembers < MIN_NONMEMBERS_FOR_TPR_0_1:
                    continue
                outcome.metrics[f"mia.{attack}.{key}"] = Observations(
                    scores[attack], higher_is_better=False, statistic=_tpr_statistic(budget), strata=self.labels)
        for subject in responses.subjects:
            outcome.details.setdefault(subject, {})["roc"] = {
                attack: _roc_points(scores[attack][subject]) for attack in scores
            }
        headline = self._strongest_attack(scores, responses.subjects)
        outcome.metrics["mia_auc"] = outcome.metrics[f"mia.{headline}.auc"]
        outcome.metrics["mia_tpr_at_1pct_fpr"] = outcome.metrics[f"mia.{headline}.tpr_at_1pct_fpr"]
        if n_nonmembers >= MIN_NONMEMBERS_FOR_TPR_0_1:
            outcome.metrics["mia_tpr_at_0.1pct_fpr"] = outcome.metrics[f"mia.{headline}.tpr_at_0.1pct_fpr"]
        else:
            outcome.missing["mia_tpr_at_0.1pct_fpr"] = (
                f"only {n_nonmembers} non-members; TPR at 0.1% FPR needs at least {MIN_NONMEMBERS_FOR_TPR_0_1}")
        blind = blind_baseline_auc([r.text for r in self.records], self.labels, seed=0)
        outcome.metrics["blind_baseline_auc"] = Observations(
            {s: np.column_stack([blind, self.labels]) for s in responses.subjects},
            higher_is_better=False, statistic=auc, strata=self.labels)
        blind_auc = auc(np.column_stack([blind, self.labels]))
        outcome.notes.setdefault("*", []).append(
            f"membership inference: {n_nonmembers} members vs {n_nonmembers} hold-out records; headline attack "
            f"`{headline}` (strongest mean AUC over the fine-tunes); blind baseline AUC {blind_auc:.3f}")
        for subject in responses.subjects:
            best = max(auc(v[subject]) for v in scores.values() if subject in v)
            if blind_auc >= best:
                outcome.notes.setdefault(subject, []).append(
                    f"WARNING: the blind baseline (AUC {blind_auc:.3f}, never sees the model) matches or beats every "
                    f"attack (best {best:.3f}): members and non-members differ in distribution")
            if best < 0.4:
                outcome.notes.setdefault(subject, []).append(
                    f"ALARM: best MIA AUC {best:.3f} is far under 0.5; an inverted score or a member/non-member swap?")

    @staticmethod
    def _strongest_attack(scores: dict[str, dict[str, np.ndarray]], subjects: list[str]) -> str:
        tuned = [s for s in subjects if s != "base"]
        if not tuned:
            return "loss"
        return max(scores, key=lambda a: float(np.mean([auc(scores[a][s]) for s in tuned])))


def _roc_points(data: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """ROC curve thinned to at most `max_points` points, for the report's log-scale plot."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(data[:, 1], data[:, 0])
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), max_points)).astype(int))
    return {"fpr": [round(float(x), 6) for x in fpr[keep]], "tpr": [round(float(x), 6) for x in tpr[keep]]}
