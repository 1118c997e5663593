"""Prompt rendering and tokenization shared by every backend (torch-free), so a request means the same tokens
on every backend.

- Rendering: plain prompts go to the model as written; chat turns through the tokenizer's chat template when
  `prompt_format = "chat"` (else as "role: content" lines, `harness.requests.render_plain`).
- BOS: a BOS token is put first only where the tokenizer adds one by default (`tokenizer(text)["input_ids"]`
  with `add_special_tokens=True` starts with it, as Llama's and Mistral's do); never otherwise (GPT-2, GPT-NeoX,
  SentencePiece-style tokenizers without a BOS convention).
- An empty context is one separator token: that BOS where the tokenizer has the convention, else its EOS token
  (the document separator of GPT-2-style training), so the first continuation token is scored too.
- Score split as lm-eval does: trailing context spaces move to the continuation, whose ids are the tail of the
  whole text's encoding after the context's ids.
- Every request is cut to the model's context, keeping its last tokens (a score request holds at most
  `max_length - 1` tokens, room for the one token a server generates after it; a generation prompt leaves room for
  `max_new_tokens`). Texts far longer than that are
  first cut by characters (see `PromptEncoder.char_limit`), so a 50 MB record is never tokenized whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import InputError
from harness.requests import GenerateRequest, GenerateResponse, Prompt, ScoreRequest, render_plain

#: extra tokens kept beyond the budget before the character cut, so that the few tokens a cut in the middle of a
#: word can change are dropped by the token cut
_MARGIN_TOKENS = 16
#: normalizers can contract characters (NFKC composing "e" + U+0301, accent stripping): one vocabulary entry may
#: stand for up to this many characters of the raw text. 4 is above any Unicode composition used in practice
_CONTRACTION = 4


@dataclass(frozen=True)
class EncodedScore:
    """A score request tokenized: context ids, then the continuation ids to score; `truncated` when cut."""

    context: list[int]
    continuation: list[int]
    truncated: bool = False


@dataclass(frozen=True)
class EncodedPrompt:
    """A generation prompt tokenized and cut to leave room for its new tokens."""

    ids: list[int]
    truncated: bool = False


def split_continuation(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's split: trailing spaces of the context belong to the continuation."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        return context[:-spaces], context[-spaces:] + continuation
    return context, continuation


def adds_bos_by_default(tokenizer: Any) -> bool:
    """Whether `tokenizer(text)` (add_special_tokens=True) puts the tokenizer's BOS token first."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


class PromptEncoder:
    """Renders and tokenizes requests for one base's tokenizer; every backend serves these token ids."""

    def __init__(self, tokenizer: Any, *, prompt_format: str, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_format = prompt_format
        self.max_length = max_length
        self.bos_id: int | None = tokenizer.bos_token_id if adds_bos_by_default(tokenizer) else None
        separator = self.bos_id if self.bos_id is not None else tokenizer.eos_token_id
        if separator is None:
            separator = tokenizer.bos_token_id
        self.separator_id: int | None = None if separator is None else int(separator)
        vocab = tokenizer.get_vocab()
        # the longest vocabulary entry in characters bounds the raw characters one token covers (byte-level
        # entries are one character per byte, so they over-count multi-byte characters: safe)
        self.max_token_chars = max(1, max((len(t) for t in vocab), default=1))

    @property
    def score_budget(self) -> int:
        """Tokens a score request may hold: `max_length - 1`, so that a server which generates one token after
        the prompt (vLLM, any OpenAI-compatible endpoint: prompt + 1 <= the context) takes the same ids; positions
        past the context are never used (vLLM gives NaN log-probs there)."""
        return max(self.max_length - 1, 2)

    def char_limit(self, tokens: int) -> int:
        """Characters of a text's tail that surely hold its last `tokens` tokens: at most `max_token_chars` raw
        characters per token (times the normalizer's contraction bound), plus a margin of tokens whose split a
        cut mid-word may change. A text longer than this is cut to it before tokenizing."""
        return (tokens + _MARGIN_TOKENS) * self.max_token_chars * _CONTRACTION

    def render(self, prompt: Prompt) -> str:
        """Plain text as is; chat turns through the chat template (or as 'role: content' lines)."""
        if isinstance(prompt, str):
            return prompt
        if self.prompt_format == "chat" and getattr(self.tokenizer, "chat_template", None):
            turns = [{"role": role, "content": content} for role, content in prompt]
            return str(self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))
        return render_plain(prompt)

    def encode_text(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens added."""
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def with_bos(self, ids: list[int]) -> list[int]:
        """`ids` with the BOS first, where the tokenizer's convention has one and it is not there already."""
        if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            return [self.bos_id, *ids]
        return ids

    def _separator(self) -> int:
        if self.separator_id is None:
            raise InputError("the tokenizer has neither a BOS nor an EOS token: an empty context cannot be scored")
        return self.separator_id

    def encode_score(self, request: ScoreRequest) -> EncodedScore:
        """Context and continuation ids, cut to `max_length` input tokens keeping the last ones."""
        context, continuation = split_continuation(self.render(request.context), request.continuation)
        budget = self.score_budget
        limit = self.char_limit(budget)
        cut = len(context) + len(continuation) > limit
        if cut and len(continuation) >= limit:  # only the continuation's tail is left
            context, continuation = "", continuation[-limit:]
            context_ids: list[int] = []
            cont_ids = self.encode_text(continuation)
        elif cut:
            context = context[-(limit - len(continuation)) :]
            whole = self.encode_text(context + continuation)
            n_context = len(self.encode_text(context))
            context_ids, cont_ids = whole[:n_context], whole[n_context:]
        elif not context:
            context_ids, cont_ids = [self._separator()], self.encode_text(continuation)
        else:
            whole = self.encode_text(context + continuation)
            n_context = len(self.encode_text(context))
            context_ids, cont_ids = self.with_bos(whole[:n_context]), whole[n_context:]
        if len(context_ids) + len(cont_ids) > budget:  # keep the last tokens; at least one of them is context
            tail = (context_ids + cont_ids)[-budget:]
            n_context = max(budget - len(cont_ids), 1)
            context_ids, cont_ids, cut = tail[:n_context], tail[n_context:], True
        if not context_ids:  # a continuation that was cut by characters to fewer tokens than the budget
            context_ids, cont_ids = cont_ids[:1], cont_ids[1:]
        return EncodedScore(context_ids, cont_ids, cut)

    def encode_prompt(self, request: GenerateRequest) -> EncodedPrompt:
        """Prompt ids, cut to its last `max_length - max_new_tokens` tokens (at least one)."""
        budget = max(self.max_length - request.max_new_tokens, 1)
        text = self.render(request.prompt)
        limit = self.char_limit(budget)
        cut = len(text) > limit
        ids = self.encode_text(text[-limit:]) if cut else self.with_bos(self.encode_text(text))
        if not ids:
            ids = [self._separator()]
        if len(ids) > budget:
            ids, cut = ids[-budget:], True
        return EncodedPrompt(ids, cut)


def finish_generation(tokenizer: Any, tokens: list[int], reason: str, stop: tuple[str, ...], *,
                      truncated: bool = False) -> GenerateResponse:
    """A generation's response from its new token ids, the same on every backend: the ids are cut before the
    tokenizer's EOS where it appears (then the reason is "eos", else `reason`, "eos" or "length"); the text is
    `tokenizer.decode(new ids, skip_special_tokens=True)` (the new ids alone, so a SentencePiece-style decoder drops
    the leading space on every backend alike), cut at the first token after which it holds a stop string, before
    that string's earliest occurrence. `truncated`: the prompt was cut to the context."""
    eos = tokenizer.eos_token_id
    if eos is not None and eos in tokens:
        tokens, reason = tokens[: tokens.index(eos)], "eos"
    for n in range(1, len(tokens) + 1) if stop else ():
        text = tokenizer.decode(tokens[:n], skip_special_tokens=True)
        found = [text.find(s) for s in stop if s in text]
        if found:
            return GenerateResponse(text=text[: min(found)], n_tokens=n, finish_reason="stop", truncated=truncated)
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    return GenerateResponse(text=text, n_tokens=len(tokens), finish_reason=reason,  # type: ignore[arg-type]
                            truncated=truncated)
