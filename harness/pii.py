"""Offline PII detection on Microsoft Presidio: the one place that builds its `AnalyzerEngine`.

A spaCy model is used for NER (PERSON, LOCATION, ...) when one is installed; without one a blank English
pipeline keeps presidio's pattern recognizers (email, phone, IBAN, card, SSN, IP, ...) and deny-list
recognizers working, and `PiiAnalyzer.ner_enabled` says NER was off. Nothing reaches the network: no spaCy
model is downloaded, and the email recognizer's tldextract uses its bundled public-suffix snapshot.

A training set's PII `Inventory` (`scan_inventory`) is added back as deny-list recognizers
(`PiiAnalyzer.with_inventory`), so an exact occurrence of a training value is an `inventory` finding and
any other PII a `generic` one. presidio and spaCy are imported lazily, inside functions.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import InputError

DEFAULT_SPACY_MODELS = ("en_core_web_lg", "en_core_web_sm")
BLANK = "blank"  # `spacy_model = "blank"`: force the blank pipeline (pattern and inventory recognizers only)
DEFAULT_SCORE_THRESHOLD = 0.4
#: Entity types that are not personal data on their own (dates, weekdays, company names).
IGNORED_ENTITIES = frozenset({"DATE_TIME", "ORGANIZATION"})
INVENTORY_PREFIX = "INVENTORY_"
LANGUAGE = "en"

_SHOW_PII: ContextVar[bool] = ContextVar("ppeval_show_pii", default=False)


def show_pii_requested() -> bool:
    """Whether raw PII may appear in samples: only inside `showing_pii()` (the CLI's `--show-pii`)."""
    return _SHOW_PII.get()


@contextlib.contextmanager
def showing_pii(enabled: bool = True) -> Iterator[None]:
    """Within the block, newly built `SuiteContext`s allow raw PII in samples (`enabled`); restored after."""
    token = _SHOW_PII.set(enabled)
    try:
        yield
    finally:
        _SHOW_PII.reset(token)


@dataclass(frozen=True)
class Finding:
    """One PII span in a text: its type, offsets, matched value, score and whether it is an inventory value."""

    entity_type: str
    start: int
    end: int
    value: str
    score: float
    inventory: bool = False

    @property
    def kind(self) -> Literal["inventory", "generic"]:
        return "inventory" if self.inventory else "generic"


@dataclass(frozen=True)
class InventoryItem:
    """A PII value found in the training data, its entity type and the number of records holding it."""

    value: str
    entity_type: str
    records: int = 1


@dataclass(frozen=True)
class Inventory:
    """The training data's PII values, unique by value, in a deterministic order (type, then value)."""

    items: tuple[InventoryItem, ...] = ()
    _by_value: dict[str, InventoryItem] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_value.update({item.value: item for item in self.items})

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, value: object) -> bool:
        return value in self._by_value

    def get(self, value: str) -> InventoryItem | None:
        return self._by_value.get(value)

    @property
    def entity_types(self) -> list[str]:
        return sorted({item.entity_type for item in self.items})

    def values_of(self, entity_type: str) -> list[str]:
        return [item.value for item in self.items if item.entity_type == entity_type]


def short_hash(value: str) -> str:
    """Six hex digits of sha256(value): enough to tell values apart in a report, too few to invert."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:6]


def redact_value(value: str, entity_type: str) -> str:
    """`<EMAIL_ADDRESS:3fa2c1>`: the type and a short hash instead of the value."""
    return f"<{entity_type}:{short_hash(value)}>"


def redact_text(text: str, findings: Sequence[Finding], extra_values: Iterable[tuple[str, str]] = ()) -> str:
    """`text` with every finding replaced by `redact_value`, then any remaining (value, type) in
    `extra_values` (e.g. the inventory) replaced wherever it still occurs, inside words included."""
    out, last = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < last:
            continue
        out += [text[last : f.start], redact_value(f.value, f.entity_type)]
        last = f.end
    redacted = "".join([*out, text[last:]])
    for value, entity_type in sorted(extra_values, key=lambda p: -len(p[0])):
        if value and value in redacted:
            redacted = redacted.replace(value, redact_value(value, entity_type))
    return redacted


def _resolve(findings: list[Finding]) -> list[Finding]:
    """Inventory findings win over generic ones they overlap; a generic finding inside a longer one goes."""
    inventory = sorted((f for f in findings if f.inventory), key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[Finding] = []
    for f in inventory:  # overlapping inventory values: keep the first, longest
        if not kept or f.start >= kept[-1].end:
            kept.append(f)
    generic = [f for f in findings if not f.inventory and not any(f.start < k.end and k.start < f.end for k in kept)]
    generic.sort(key=lambda f: (-(f.end - f.start), -f.score, f.start))
    chosen: list[Finding] = []
    for f in generic:
        if not any(c.start <= f.start and f.end <= c.end for c in chosen):
            chosen.append(f)
    return sorted([*kept, *chosen], key=lambda f: (f.start, f.end, f.entity_type))


class PiiAnalyzer:
    """presidio's analyzer with this harness's defaults; `find` returns resolved `Finding`s."""

    def __init__(self, engine: Any, *, spacy_model: str | None, score_threshold: float,
                 inventory: Inventory | None = None) -> None:
        self._engine = engine
        self.spacy_model = spacy_model  # the spaCy package used for NER, None for the blank pipeline
        self.score_threshold = score_threshold
        self.inventory = inventory or Inventory()
        supported = set(engine.get_supported_entities(language=LANGUAGE))
        self._entities = sorted(e for e in supported if e not in IGNORED_ENTITIES)

    @property
    def ner_enabled(self) -> bool:
        return self.spacy_model is not None

    @property
    def mode(self) -> str:
        """Human-readable NER mode for scorecard notes."""
        if self.ner_enabled:
            return f"spaCy NER `{self.spacy_model}` + pattern recognizers"
        return "NER off (no spaCy model installed: blank English pipeline, pattern and inventory recognizers only)"

    def find(self, text: str) -> list[Finding]:
        """PII in `text`: inventory values exactly (case-sensitive, on word boundaries) and generic PII."""
        if not text.strip():
            return []
        results = self._engine.analyze(text, language=LANGUAGE, entities=self._entities,
                                       score_threshold=self.score_threshold)
        findings = []
        for r in results:
            value = text[r.start : r.end]
            if r.entity_type.startswith(INVENTORY_PREFIX):
                findings.append(Finding(r.entity_type[len(INVENTORY_PREFIX):], r.start, r.end, value, r.score, True))
            else:
                findings.append(Finding(r.entity_type, r.start, r.end, value, r.score))
        return _resolve(findings)

    def find_many(self, texts: Iterable[str]) -> list[list[Finding]]:
        return [self.find(t) for t in texts]

    def with_inventory(self, inventory: Inventory) -> PiiAnalyzer:
        """A new analyzer (sharing the NLP pipeline) that also reports `inventory`'s values as inventory hits."""
        from presidio_analyzer import AnalyzerEngine, PatternRecognizer, RecognizerRegistry

        base = [r for r in self._engine.registry.recognizers if not _is_inventory(r)]
        extra = [
            PatternRecognizer(supported_entity=INVENTORY_PREFIX + t, name=f"inventory_{t.lower()}",
                              deny_list=inventory.values_of(t), supported_language=LANGUAGE,
                              global_regex_flags=re.DOTALL | re.MULTILINE)  # case-sensitive: exact values
            for t in inventory.entity_types
        ]
        registry = RecognizerRegistry(recognizers=[*base, *extra], supported_languages=[LANGUAGE])
        engine = AnalyzerEngine(registry=registry, nlp_engine=self._engine.nlp_engine,
                                supported_languages=[LANGUAGE])
        return PiiAnalyzer(engine, spacy_model=self.spacy_model, score_threshold=self.score_threshold,
                           inventory=inventory)


def _is_inventory(recognizer: Any) -> bool:
    return any(e.startswith(INVENTORY_PREFIX) for e in recognizer.supported_entities)


def scan_inventory(pii: PiiAnalyzer, texts: Iterable[str], *, min_chars: int = 4) -> Inventory:
    """The PII inventory of `texts` (see `inventory_from_findings`)."""
    return inventory_from_findings((pii.find(text) for text in texts), min_chars=min_chars)


def inventory_from_findings(per_text: Iterable[Sequence[Finding]], *, min_chars: int = 4) -> Inventory:
    """An inventory from each text's findings: every generic finding of at least `min_chars` characters, unique
    by value, typed by its most frequent entity type, with the number of texts it occurs in."""
    types: dict[str, Counter[str]] = defaultdict(Counter)
    records: Counter[str] = Counter()
    for findings in per_text:
        seen: set[str] = set()
        for f in findings:
            if f.inventory or len(f.value.strip()) < min_chars:
                continue
            types[f.value][f.entity_type] += 1
            if f.value not in seen:
                seen.add(f.value)
                records[f.value] += 1
    items = [InventoryItem(v, max(sorted(c), key=lambda t: c[t]), records[v]) for v, c in types.items()]
    return Inventory(tuple(sorted(items, key=lambda i: (i.entity_type, i.value))))


# ------------------------------------------------------------------------------------------- building


def _installed(name: str) -> bool:
    return Path(name).exists() or importlib.util.find_spec(name) is not None


def _lower_lemma(doc: Any) -> Any:
    """Lowercased text as the lemma, so presidio's context words ("phone", "account") work without a model."""
    for token in doc:
        token.lemma_ = token.lower_
    return doc


def _nlp_engine(spacy_model: str | None) -> tuple[Any, str | None]:
    """A loaded presidio NlpEngine and the spaCy model it runs (None: blank pipeline)."""
    import spacy
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from spacy.language import Language

    if spacy_model is None:
        chosen = next((m for m in DEFAULT_SPACY_MODELS if _installed(m)), None)
    elif spacy_model == BLANK:
        chosen = None
    elif _installed(spacy_model):
        chosen = spacy_model
    else:
        raise InputError(f"spaCy model {spacy_model!r} is not installed (nothing is downloaded at run time); "
                         f"install it, or set spacy_model = {BLANK!r} for pattern recognizers only")

    class OfflineSpacyNlpEngine(SpacyNlpEngine):
        """SpacyNlpEngine that loads an installed model or a blank pipeline and never downloads one."""

        def load(self) -> None:
            if chosen is not None:
                self.nlp = {LANGUAGE: spacy.load(chosen)}
                return
            if not Language.has_factory("ppeval_lower_lemma"):
                Language.component("ppeval_lower_lemma", func=_lower_lemma)
            nlp = spacy.blank(LANGUAGE)
            nlp.add_pipe("ppeval_lower_lemma")
            self.nlp = {LANGUAGE: nlp}

    engine = OfflineSpacyNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": chosen or BLANK}])
    engine.load()
    return engine, chosen


def _offline_email_recognizer() -> Any:
    """presidio's EmailRecognizer validated with a tldextract that only uses its bundled suffix snapshot."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def analyzer(spacy_model: str | None = None, *, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> PiiAnalyzer:
    """The shared offline analyzer, built once per setting (see `build_analyzer`)."""
    return _cached_analyzer(spacy_model, float(score_threshold))


@functools.lru_cache(maxsize=4)
def _cached_analyzer(spacy_model: str | None, score_threshold: float) -> PiiAnalyzer:
    return build_analyzer(spacy_model, score_threshold=score_threshold)


def build_analyzer(spacy_model: str | None = None, *,
                   score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> PiiAnalyzer:
    """A new offline analyzer: `spacy_model` None tries en_core_web_lg then en_core_web_sm, then blank;
    "blank" forces the blank pipeline; another name must be an installed spaCy package or path."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, SpacyRecognizer

    nlp_engine, chosen = _nlp_engine(spacy_model)
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.load_predefined_recognizers(nlp_engine=nlp_engine, languages=[LANGUAGE])
    keep = [r for r in registry.recognizers if not isinstance(r, EmailRecognizer)]
    if chosen is None:  # no NER model: the spaCy recognizer would find nothing
        keep = [r for r in keep if not isinstance(r, SpacyRecognizer)]
    registry.recognizers = [*keep, _offline_email_recognizer()]
    engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[LANGUAGE])
    return PiiAnalyzer(engine, spacy_model=chosen, score_threshold=score_threshold)
