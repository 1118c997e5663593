"""Offline PII detection on Microsoft Presidio: the one place that builds its `AnalyzerEngine`.

A spaCy model is used for NER (PERSON, LOCATION, ...) when one is installed; without one a blank English
pipeline keeps presidio's pattern recognizers (email, phone, IBAN, card, SSN, IP, ...) working, and
`PiiAnalyzer.ner_enabled` says NER was off. Nothing reaches the network: no spaCy model is downloaded, and
tldextract (e-mail and URL validation) uses only its bundled public-suffix snapshot.

A training set's PII `Inventory` (`scan_inventory`) is matched back in generated text
(`PiiAnalyzer.with_inventory`): an occurrence of a training value is an `inventory` finding and any other PII
a `generic` one. Inventory matching compares a normal form (`normal_form`: NFKC, any run of whitespace, NBSP
included, as one space), so it does not depend on the tokenizer: SentencePiece-style tokenizers drop the
leading space of what they decode and normalise what they encode (NFKC). A generic finding counts as PII only
when it passes its entity type's validation rule (`validates`, `Finding.validated`); presidio's bare URL
pattern alone flags gibberish such as "le.li".
presidio and spaCy are imported lazily, inside functions.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import ipaddress
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    """One PII span in a text: its type, offsets, value, score, whether it is an inventory value and whether
    it counts as PII. An inventory finding's `value` is the inventory's spelling (the text may space it
    differently); `validated` is False only for a generic finding that fails its type's rule (`validates`)."""

    entity_type: str
    start: int
    end: int
    value: str
    score: float
    inventory: bool = False
    validated: bool = True

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
    """Inventory findings win over generic ones they overlap; a generic finding inside a longer one goes, but an
    unvalidated finding never hides a validated one (validated ones are placed first)."""
    inventory = sorted((f for f in findings if f.inventory), key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[Finding] = []
    for f in inventory:  # overlapping inventory values: keep the first, longest
        if not kept or f.start >= kept[-1].end:
            kept.append(f)
    generic = [f for f in findings if not f.inventory and not any(f.start < k.end and k.start < f.end for k in kept)]
    generic.sort(key=lambda f: (not f.validated, -(f.end - f.start), -f.score, f.start))
    chosen: list[Finding] = []
    for f in generic:
        if not any(c.start <= f.start and f.end <= c.end for c in chosen):
            chosen.append(f)
    return sorted([*kept, *chosen], key=lambda f: (f.start, f.end, f.entity_type))


# ------------------------------------------------------------------------------------------- validation
#
# A generic finding (PII that is not a training value) counts only when its entity type has a rule below and
# the value passes it; every other type (US_SSN, US_PASSPORT, US_DRIVER_LICENSE, US_BANK_NUMBER, US_ITIN,
# MEDICAL_LICENSE, MAC_ADDRESS, UUID, and the NER types PERSON, LOCATION, NRP, ...) is a pattern or a guess with
# nothing to check, and stays out of `pii_generic_rate` (the suite notes how many were left out). The rules:
#   CREDIT_CARD   13-19 digits (spaces/hyphens allowed) passing the Luhn checksum, not one repeated digit
#   IBAN_CODE     ISO 13616: country letters, 2 check digits, 11-30 alphanumerics, ISO 7064 mod-97 = 1
#   UK_NHS        10 digits passing the NHS mod-11 check digit
#   CRYPTO        presidio's own checksum (Base58Check / Bech32) already passed: accepted as found
#   EMAIL_ADDRESS local@host with a plausible registrable host (below)
#   URL           an explicit scheme (http, https, ftp) or "www.", a plausible registrable host, and not glued
#                 to a following word character: a bare "word.tld" is what a sentence missing its space looks
#                 like ("le.li", "sign.re", "example.il" are all real ccTLDs), so it never counts
#   IP_ADDRESS    parses as IPv4/IPv6 and is globally routable (no private, loopback, documentation range)
#   PHONE_NUMBER  accepted as found: presidio's matcher already requires a number valid for its region's
#                 numbering plan (libphonenumber, leniency VALID), not merely a run of digits
# A plausible registrable host: ASCII hostname labels, a public suffix from the ICANN section of tldextract's
# BUNDLED public-suffix snapshot (never fetched), and a registrable label of 2+ characters with a letter.

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
_URL_HEAD = re.compile(r"(?:(?:https?|ftp)://(?:[^\s/@]+@)?|www\.)", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def _suffixes() -> Any:
    """tldextract on its bundled public-suffix snapshot only (no fetch, no cache), ICANN suffixes only."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True,
                                 include_psl_private_domains=False)


def registrable_host(host: str) -> bool:
    """`host` ends in a real public suffix (bundled list) under a plausible registrable label."""
    host = host.rstrip(".").lower()
    if not host or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return False
    parts = _suffixes()(host)
    return bool(parts.suffix) and len(parts.domain) >= 2 and any(c.isalpha() for c in parts.domain)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card(value: str) -> bool:
    digits = re.sub(r"[ -]", "", value)
    return digits.isdigit() and 13 <= len(digits) <= 19 and len(set(digits)) > 1 and _luhn(digits)


def _iban(value: str) -> bool:
    compact = re.sub(r"[ -]", "", value).upper()
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _nhs(value: str) -> bool:
    digits = re.sub(r"[ -]", "", value)
    if not (digits.isdigit() and len(digits) == 10):
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    return check != 10 and (check % 11) == int(digits[9])


def _email(value: str) -> bool:
    local, at, host = value.rpartition("@")
    return bool(at and local) and registrable_host(host)


def _url(value: str) -> bool:
    head = _URL_HEAD.match(value)
    if head is None:
        return False
    host = re.split(r"[/:?#]", value[head.end():], maxsplit=1)[0]
    if head.group().lower() == "www.":
        host = "www." + host
    return registrable_host(host)


def _global_ip(value: str) -> bool:
    try:
        return ipaddress.ip_address(value.strip("[]")).is_global
    except ValueError:
        return False


def _accept(value: str) -> bool:
    return True


#: entity type -> rule for its generic findings (the table above); types not listed never count as generic PII
GENERIC_RULES: dict[str, Callable[[str], bool]] = {
    "CREDIT_CARD": _card, "IBAN_CODE": _iban, "UK_NHS": _nhs, "CRYPTO": _accept, "EMAIL_ADDRESS": _email,
    "URL": _url, "IP_ADDRESS": _global_ip, "PHONE_NUMBER": _accept,
}


def validates(entity_type: str, value: str, text: str = "", start: int = 0, end: int | None = None) -> bool:
    """Whether a generic `entity_type` finding `value` (at `text[start:end]`) counts as PII (rules above)."""
    rule = GENERIC_RULES.get(entity_type)
    if rule is None or not rule(value):
        return False
    end = start + len(value) if end is None else end
    glued = end < len(text) and (text[end].isalnum() or text[end] == "_")
    return not (entity_type == "URL" and glued)


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
        self._matcher, self._by_form = _inventory_matcher(self.inventory)

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
        """PII in `text`: inventory values (case-sensitive, on word boundaries, in `normal_form`) and
        generic PII, each generic finding marked `validated` or not (see `validates`)."""
        if not text.strip():
            return []
        results = self._engine.analyze(text, language=LANGUAGE, entities=self._entities,
                                       score_threshold=self.score_threshold)
        findings = []
        for r in results:
            value = text[r.start : r.end]
            findings.append(Finding(r.entity_type, r.start, r.end, value, r.score,
                                    validated=validates(r.entity_type, value, text, r.start, r.end)))
        if self._matcher is not None:
            folded, source = _fold(text)
            for m in self._matcher.finditer(folded):
                item = self.inventory.get(self._by_form[" ".join(m.group().split())])
                start, end = (m.start(), m.end()) if source is None else (source[m.start()], source[m.end() - 1] + 1)
                findings.append(Finding(item.entity_type, start, end, item.value, 1.0, True))  # type: ignore[union-attr]
        return _resolve(findings)

    def find_many(self, texts: Iterable[str]) -> list[list[Finding]]:
        return [self.find(t) for t in texts]

    def with_inventory(self, inventory: Inventory) -> PiiAnalyzer:
        """A new analyzer (sharing the presidio engine) that also reports `inventory`'s values as inventory hits."""
        return PiiAnalyzer(self._engine, spacy_model=self.spacy_model, score_threshold=self.score_threshold,
                           inventory=inventory)


def _fold(text: str) -> tuple[str, list[int] | None]:
    """`text` with each non-ASCII character in NFKC (as `harness.textmatch` compares; per character, so each
    folded character maps back to `text`), and the source offset of each folded character (None: unchanged)."""
    if text.isascii():
        return text, None
    parts, source = [], []
    for i, ch in enumerate(text):
        folded = unicodedata.normalize("NFKC", ch)
        parts.append(folded)
        source += [i] * len(folded)
    return "".join(parts), source


def normal_form(text: str) -> str:
    """How inventory values are compared: NFKC per character, every whitespace run one space, stripped."""
    return " ".join(_fold(text)[0].split())


def _spacing_tolerant(value: str) -> str:
    """A regex for `value` where each run of whitespace matches any run of whitespace."""
    return r"\s+".join(re.escape(part) for part in value.split())


def _inventory_matcher(inventory: Inventory) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """One regex for every inventory value in normal form (longest first, not inside a word, as presidio's deny
    lists were), to run on folded text, and the inventory value of each normal form (the first on a collision)."""
    by_form: dict[str, str] = {}
    for item in inventory.items:
        if (key := normal_form(item.value)):
            by_form.setdefault(key, item.value)
    if not by_form:
        return None, by_form
    alternatives = sorted(by_form, key=lambda v: (-len(v), v))
    pattern = r"(?<!\w)(?:" + "|".join(_spacing_tolerant(v) for v in alternatives) + r")(?!\w)"
    return re.compile(pattern), by_form


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
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return _suffixes()(pattern_text).fqdn != ""

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
