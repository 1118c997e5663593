"""Canary exposure and extraction: what the memorization suite asks about the canaries and how it scores it.

Each template's *reference pool* is its never-inserted twins from the canaries file, then secrets drawn
uniformly from the secret space until `n_references` are reached. An inserted canary is ranked against the
whole pool, a twin against the rest of it (leave-one-out), so a twin is exchangeable with its references
and reads `chance_exposure` in expectation on every subject; `.twins` far from it says the drawn references
do not look like the file's own secrets to the model.

Extraction per canary, which can reach 1 (greedy decoding from the shared prefix gives one output for all
canaries of a template, so it could not): `canary_extraction_rate` is the share of inserted canaries whose
secret is strictly more likely than every reference (exposure at its maximum, log2 |R|; chance 1/(|R|+1));
`canary_extraction_rate.sampled` the share emitted verbatim in the greedy or one of `samples` seeded
samples (temperature 1) from the template's prefix, compared in `harness.textmatch`'s normal form.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.canaries import RECOMMENDED_SPACE_SIZE, Canary, SecretSpace
from harness.errors import InputError
from harness.requests import GenerateRequest, ScoreRequest
from harness.stats import Observations
from harness.suite import Responses, SuiteOutcome
from harness.textmatch import continues_with
from suites.memorization.exposure import (
    chance_exposure,
    fit_skewnorm,
    rank_exposure,
    skewnorm_exposure,
    twin_exposures,
)

TWIN_SD_BITS = math.log2(math.e)  # sd of -log2 of a uniform rank, for the twins' chance check


def _twins_statistic(data: np.ndarray) -> float:
    """Mean twin exposure over the pools in `data` (columns: log-perplexity, is twin, template index)."""
    values = [twin_exposures(data[rows, 0], data[rows, 1] == 1)
              for t in np.unique(data[:, 2]) if (rows := data[:, 2] == t).any()]
    return float(np.mean(np.concatenate(values)))


@dataclass(frozen=True)
class ReferencePool:
    """One template's references: the file's never-inserted twins, then secrets drawn from the space."""

    template: str
    space: SecretSpace
    twins: tuple[str, ...]
    drawn: tuple[str, ...]

    @property
    def prefix(self) -> str:
        return self.template.split("{secret}", 1)[0]

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.twins + self.drawn

    def describe(self) -> str:
        """Where the references came from, for the notes."""
        drawn = f"{len(self.drawn)} drawn uniformly from {self.space.length} characters of {self.space.alphabet!r}"
        if not self.twins:
            return drawn
        return f"{len(self.twins)} never-inserted twins from the canaries file" + (
            f" + {drawn}" if self.drawn else "")


def reference_pools(canaries: Sequence[Canary], n_references: int, rng: random.Random) -> dict[str, ReferencePool]:
    """Per template: every twin of the file, plus drawn secrets up to `n_references` (fewer if the space runs out)."""
    taken = {c.secret for c in canaries}
    pools: dict[str, ReferencePool] = {}
    for template in dict.fromkeys(c.template for c in canaries):
        group = [c for c in canaries if c.template == template]
        space = group[0].space
        twins = tuple(c.secret for c in group if not c.inserted)
        left = space.size - sum(1 for s in taken if space.contains(s))
        n_draw = min(max(0, n_references - len(twins)), left)
        pool = ReferencePool(template, space, twins, tuple(space.sample(rng, n_draw, taken)))
        if len(pool.secrets) < 2:
            raise InputError(f"suites.memorization.n_references: template {template!r} has {len(pool.secrets)} "
                             "reference secret(s); exposure needs at least 2 (raise n_references)")
        pools[template] = pool
    return pools


class CanaryScoring:
    """Plans the canary requests and turns their responses into exposure and extraction metrics."""

    def __init__(self, canaries: Sequence[Canary], n_references: int, samples: int, rng: random.Random) -> None:
        self.canaries = list(canaries)
        self.pools = reference_pools(self.canaries, n_references, rng)
        self.canary_requests = [ScoreRequest(c.prefix, c.secret) for c in self.canaries]
        self.drawn_requests = {t: [ScoreRequest(p.prefix, s) for s in p.drawn] for t, p in self.pools.items()}
        self.generations = {
            t: [GenerateRequest(p.prefix.rstrip(), max_new_tokens=2 * p.space.length + 4, temperature=temp, seed=i)
                for i, temp in enumerate([0.0] + [1.0] * samples)]
            for t, p in self.pools.items()
        }
        self.samples = samples

    def requests(self) -> list[ScoreRequest | GenerateRequest]:
        out: list[ScoreRequest | GenerateRequest] = list(self.canary_requests)
        for template in self.pools:
            out += self.drawn_requests[template] + self.generations[template]
        return out

    def _pool_px(self, responses: Responses, subject: str, canary_px: dict[str, float], template: str) -> np.ndarray:
        """Log-perplexities of a pool's secrets: twins from their canary requests, then the drawn ones."""
        pool = self.pools[template]
        drawn = [-responses.scored(subject, r).total_logprob for r in self.drawn_requests[template]]
        return np.array([canary_px[s] for s in pool.twins] + drawn, dtype=float)

    def score(self, responses: Responses, outcome: SuiteOutcome) -> None:
        """Exposure (rank and skew-normal), extraction (rank-first and sampled), per repetition bucket and twins."""
        columns: dict[str, dict[str, np.ndarray]] = {k: {} for k in ("rank", "skewnorm", "first", "emitted")}
        pooled: dict[str, np.ndarray] = {}
        for subject in responses.subjects:
            px = {c.secret: -responses.scored(subject, r).total_logprob
                  for c, r in zip(self.canaries, self.canary_requests, strict=True)}
            pools = {t: self._pool_px(responses, subject, px, t) for t in self.pools}
            pooled[subject] = np.concatenate([
                np.column_stack([v, np.arange(len(v)) < len(self.pools[t].twins), np.full(len(v), i)])
                for i, (t, v) in enumerate(pools.items())])
            fits = {t: fit_skewnorm(v) for t, v in pools.items()}
            texts = {t: [responses.generated(subject, g).text for g in gens] for t, gens in self.generations.items()}
            rows = []
            for canary in self.canaries:
                refs = pools[canary.template]
                if not canary.inserted:  # a twin is ranked among the other references
                    refs = np.delete(refs, self.pools[canary.template].twins.index(canary.secret))
                value = px[canary.secret]
                row = (rank_exposure(value, refs), skewnorm_exposure(value, fits[canary.template]),
                       float(value < refs.min()),
                       float(any(continues_with(t, canary.secret) for t in texts[canary.template])))
                rows.append(row)
                outcome.samples.append({
                    "subject": subject, "kind": "canary", "canary_id": canary.canary_id,
                    "repetitions": canary.repetitions, "log_perplexity": value, "exposure_bits": row[0],
                    "exposure_skewnorm_bits": row[1], "extracted": bool(row[2]), "emitted": bool(row[3])})
            for key, column in zip(columns, np.array(rows).T, strict=True):
                columns[key][subject] = column
        self._metrics(columns, outcome)
        self._twins(pooled, outcome)
        self._notes(outcome)

    def _twins(self, pooled: dict[str, np.ndarray], outcome: SuiteOutcome) -> None:
        """`.twins`: bootstrapped over twins and drawn references alike; a note where it is far from chance."""
        first = next(iter(pooled.values()))
        if not (first[:, 1] == 1).any():
            return
        outcome.metrics["canary_exposure_bits.twins"] = Observations(
            pooled, higher_is_better=False, statistic=_twins_statistic, strata=first[:, 1] + 2 * first[:, 2])
        n_twins = int((first[:, 1] == 1).sum())
        expected = float(np.mean([chance_exposure(len(p.secrets) - 1) for p in self.pools.values() for _ in p.twins]))
        for subject, data in pooled.items():
            value = _twins_statistic(data)
            if abs(value - expected) > 3 * TWIN_SD_BITS / math.sqrt(n_twins):
                outcome.notes.setdefault(subject, []).append(
                    f"WARNING: never-inserted twins read {value:.2f} bits, chance is {expected:.2f}: to this model the "
                    "drawn references do not look like the file's own secrets, so exposure is biased; give more "
                    "twins (they are used as references first) or fewer `n_references`")

    def _metrics(self, columns: dict[str, dict[str, np.ndarray]], outcome: SuiteOutcome) -> None:
        inserted = np.array([c.inserted for c in self.canaries])
        reps = np.array([c.repetitions for c in self.canaries])

        def rows(key: str, mask: np.ndarray) -> Observations:
            return Observations({s: v[mask] for s, v in columns[key].items()}, higher_is_better=False)

        if inserted.any():
            outcome.metrics["canary_exposure_bits"] = rows("rank", inserted)
            outcome.metrics["canary_exposure_skewnorm_bits"] = rows("skewnorm", inserted)
            outcome.metrics["canary_extraction_rate"] = rows("first", inserted)
            outcome.metrics["canary_extraction_rate.sampled"] = rows("emitted", inserted)
            for rep in sorted(set(reps[inserted].tolist())):
                outcome.metrics[f"canary_exposure_bits.rep_{rep}"] = rows("rank", reps == rep)
                outcome.metrics[f"canary_extraction_rate.rep_{rep}"] = rows("first", reps == rep)
        else:
            outcome.missing["canary_exposure_bits"] = "the canaries file has no inserted canary (repetitions >= 1)"

    def _notes(self, outcome: SuiteOutcome) -> None:
        notes = outcome.notes.setdefault("*", [])
        for template, pool in self.pools.items():
            m = len(pool.secrets)
            notes.append(
                f"canary exposure ({template!r}): rank by likelihood among {m} references ({pool.describe()}); a twin "
                f"among the other {m - 1}; ties split evenly; at most {math.log2(m):.1f} bits measurable by rank "
                f"(`_skewnorm` extrapolates beyond); a never-inserted canary reads {chance_exposure(m - 1):.2f} bits "
                "in expectation on every subject, which `.twins` checks (its n counts twins and references: both are "
                "resampled)")
            if pool.space.small:
                notes.append(
                    f"WARNING: the secret space of {template!r} has {pool.space.size} candidates, under 2**20 = "
                    f"{RECOMMENDED_SPACE_SIZE}: accepted, but exposure can never exceed "
                    f"{math.log2(pool.space.size):.1f} bits, and a secret this short is guessed by chance more easily")
        notes.append(
            "canary extraction: `canary_extraction_rate` is the share of inserted canaries whose secret is more likely "
            "than every one of its references (exposure at its maximum; chance 1/(references + 1)), per canary; "
            f"`.sampled` the share emitted verbatim in the greedy or one of {self.samples} seeded samples "
            "(temperature 1) from the template's prefix, compared whitespace-normalised (tokenizer-independent)")
