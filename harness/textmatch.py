"""Tokenizer-independent comparison of generated text with expected text.

Decoders differ in how they render the first generated token: byte-level BPE keeps its leading space
(" 123456"), SentencePiece-style (Metaspace/Unigram: Llama-2, Mistral, T5) drops it ("123456"), and
NFKC normalisers change some characters. So generated text is never compared raw: both sides are put in
one normal form first (NFKC, every whitespace run one space, leading and trailing whitespace removed).
Pure Python: no tokenizer needed.
"""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """`text` in NFKC with whitespace runs collapsed to one space and both ends stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def continues_with(generated: str, expected: str, *, word_boundary: bool = True) -> bool:
    """True when `generated` (the decoded new tokens) begins with `expected`, compared in normal form.

    With `word_boundary`, the match must not stop inside a word: the generated character right after it
    must not be a letter or digit (so "1234567" does not count as emitting the secret "123456").
    Whether the model put a space between the prompt and the continuation is not judged: SentencePiece
    decoders cannot show it. An empty `expected` never matches.
    """
    want, got = normalise(expected), normalise(generated)
    if not want or not got.startswith(want):
        return False
    if not word_boundary or len(got) == len(want):
        return True
    return not (want[-1].isalnum() and got[len(want)].isalnum())
