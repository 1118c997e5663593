"""The `server` backend: an OpenAI-compatible endpoint (vLLM, SGLang, TGI, llama.cpp) over HTTP, standard library only.

- Requests are tokenized here with the base's own tokenizer (`harness.prompts`, from `[model] base`, which needs
  only the tokenizer files and config.json) and sent as token ids, so a request means the same tokens as on `hf`.
- Scoring: `/v1/completions` with `echo: true, logprobs: 1, max_tokens: 1` on the ids; the continuation's
  log-probs are the echoed prompt entries after the context (the first prompt token has none; the one generated
  token is ignored). A token is greedy when its log-prob is the top one returned for its position.
- Generation: greedy (`temperature: 0`) or sampled with the request's `seed`. Where the server returns the new
  tokens' ids (vLLM's `return_tokens_as_token_ids`, found by the probe), the ids are decoded and cut at stop strings
  here (`harness.prompts.finish_generation`), exactly as on `hf` (a server's own detokenizer keeps a SentencePiece
  leading space that `hf` drops); elsewhere the server's text is taken, cut at the stop strings it was sent.
- Capabilities are probed once at the start (one echo request, two seeded samples, one request for token ids):
  prompt log-probs where the server echoes them; vocabulary statistics never (no OpenAI-compatible API returns
  the whole distribution).
- Subjects are named by their served model name (`served_model`, default the subject's name; the base's is
  `[backend] base_model`). Identity: the adapter's content hash where the config gives its directory, or the
  digest given as `sha256`; else the id the server reports, stated as unverified in the scorecard's provenance.
- Transport: bounded concurrency, a timeout per request, retries with backoff on 429/5xx and dropped connections,
  then exit 3 naming the endpoint. The API key is read from the environment variable `api_key_env` names and is
  never written anywhere. Nothing is contacted but `[backend] url`, and nothing at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import Capabilities, Sink, Work, package_version
from harness.errors import InputError, RunFailure
from harness.prompts import finish_generation
from harness.requests import (
    EngineSettings,
    GenerateRequest,
    GenerateResponse,
    Request,
    Response,
    ScoreRequest,
    ScoreResponse,
)

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.prompts import PromptEncoder
    from harness.subjects import Subject

SERVER_BACKEND_VERSION = "2"  # 2: generated token ids decoded here where the server returns them
#: vLLM's extension: the generated tokens come back as "token_id:<id>" strings in `logprobs.tokens`
_AS_IDS = {"logprobs": 0, "return_tokens_as_token_ids": True}
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_BATCH = 32  # responses handed to the sink (and the cache) at a time


class ServerBackend:
    """Serves requests through an OpenAI-compatible `/v1/completions` endpoint, every subject at once."""

    kind = "server"

    def __init__(self, config: RunConfig) -> None:
        b = config.backend
        assert b.url is not None and b.base_model is not None  # checked by the config
        self.config = config
        self.url = b.url.rstrip("/")
        self.base_model = b.base_model
        self.timeout_s = b.timeout_s
        self.max_concurrency = b.max_concurrency
        self.max_retries = b.max_retries
        self.api_key_env = b.api_key_env
        self.served: dict[str, str] = {}  # subject name -> served model name
        self.identity: dict[str, str] = {}  # subject name -> how its identity was established
        self._encoder: PromptEncoder | None = None
        self._capabilities: Capabilities | None = None
        self._models: dict[str, dict[str, Any]] | None = None
        self._token_ids: bool | None = None  # the server returns generated token ids (vLLM's extension)

    def __getstate__(self) -> dict[str, Any]:  # Ray workers load their own tokenizer
        return {**self.__dict__, "_encoder": None}

    # ----------------------------------------------------------------- settings and identity
    def settings(self) -> EngineSettings:
        config_file = Path(self.config.model.base) / "config.json"
        max_length = 2048
        if config_file.is_file():
            max_length = int(json.loads(config_file.read_text(encoding="utf-8")).get("max_position_embeddings")
                             or 2048)
        return EngineSettings(dtype="server", prompt_format=self.config.model.prompt_format, max_length=max_length,
                              engine_version=f"server-{SERVER_BACKEND_VERSION}",
                              extra={"backend": "server", "url": self.url})

    def models(self) -> dict[str, dict[str, Any]]:
        """The server's `/v1/models`, by id (fetched once)."""
        if self._models is None:
            data = self._call("GET", "/models", None)
            self._models = {str(m.get("id")): m for m in data.get("data", []) if isinstance(m, dict)}
        return self._models

    def subjects(self, config: RunConfig) -> list[Subject]:
        from harness.subjects import Subject, content_hash

        models = self.models()
        base_dir = Path(config.model.base)

        def served(name: str, what: str) -> dict[str, Any]:
            if name not in models:
                raise InputError(f"{self.url}: {what} is served as {name!r}, which the server does not list "
                                 f"(it serves: {', '.join(sorted(models)) or 'nothing'})")
            return models[name]

        def unverified(name: str, model: dict[str, Any]) -> str:
            reported = {k: model.get(k) for k in ("id", "root", "parent")}
            return hashlib.sha256(json.dumps(["unverified", reported], sort_keys=True).encode()).hexdigest()

        base_entry = served(self.base_model, "the base ([backend] base_model)")
        subjects = [Subject("base", "base", base_dir, content_hash(base_dir))]
        self.served["base"] = self.base_model
        self.identity["base"] = (f"served as {self.base_model!r}; assumed to be {base_dir} (content hash of the local "
                                 f"directory; the server reports root {base_entry.get('root', '?')!r})")
        for spec in config.subjects:
            name = spec.served_model or spec.name
            entry = served(name, f'subject "{spec.name}"')
            self.served[spec.name] = name
            path = spec.adapter or spec.model
            if path is not None:
                digest, how = content_hash(path), f"content hash of {path}"
            elif spec.sha256 is not None:
                digest, how = spec.sha256, "the sha256 the config gives"
            else:
                digest = unverified(name, entry)
                how = (f"UNVERIFIED: the server-reported id {entry.get('id')!r} (root {entry.get('root', '?')!r}); "
                       "give `adapter` or `sha256` to pin what is served")
            self.identity[spec.name] = f"served as {name!r}; identity: {how}"
            kind = "full" if spec.model is not None or (path is None and not entry.get("parent")) else "adapter"
            subjects.append(Subject(spec.name, kind, path or Path(name), digest))
        return subjects

    # ----------------------------------------------------------------- capabilities
    @property
    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = self._probe()
        return self._capabilities

    def _probe(self) -> Capabilities:
        """One echo request and two seeded samples on the base, at the start of the run."""
        reasons = {"vocab_stats": "an OpenAI-compatible API returns top log-probs only, never the whole "
                                  "next-token distribution that Min-K%++ needs"}
        ids = self.encoder().with_bos(self.encoder().encode_text("The probe"))[:4]
        prompt_logprobs = True
        try:
            echoed = self._completion(self.base_model, ids, {"max_tokens": 1, "echo": True, "logprobs": 1})
            lps = (echoed.get("logprobs") or {}).get("token_logprobs") or []
            if len(lps) < len(ids) or any(lp is None for lp in lps[1 : len(ids)]):
                prompt_logprobs = False
                reasons["prompt_logprobs"] = f"{self.url} does not echo prompt log-probs (`echo` with `logprobs`)"
        except RunFailure as exc:
            if "HTTP 4" not in str(exc):
                raise
            prompt_logprobs = False
            reasons["prompt_logprobs"] = f"{self.url} refused an echo request with log-probs: {exc}"
        sample = {"max_tokens": 6, "temperature": 1.0, "seed": 1234}
        seeded = (self._completion(self.base_model, ids, sample).get("text")
                  == self._completion(self.base_model, ids, sample).get("text"))
        if not seeded:
            reasons["seeded_sampling"] = f"{self.url} gave two different samples for one seed"
        try:
            self._token_ids = _token_ids(self._completion(self.base_model, ids, {"max_tokens": 2, "temperature": 0,
                                                                                **_AS_IDS})) is not None
        except RunFailure as exc:
            if "HTTP 4" not in str(exc):
                raise
            self._token_ids = False
        return Capabilities(prompt_logprobs=prompt_logprobs, vocab_stats=False, seeded_sampling=seeded,
                            mixed_subjects=True, reasons=reasons)

    def returns_token_ids(self) -> bool:
        """Whether the server returns generated token ids (probed with the capabilities)."""
        if self._token_ids is None:
            self._capabilities = self._probe()
        return bool(self._token_ids)

    # ----------------------------------------------------------------- serving
    def encoder(self) -> PromptEncoder:
        """The base's tokenizer (local files only), loaded on first use."""
        if self._encoder is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoTokenizer

            from harness.prompts import PromptEncoder

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.config.model.base, local_files_only=True,
                                                          trust_remote_code=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"{self.config.model.base}: cannot load the base's tokenizer: {exc}") from None
            self._encoder = PromptEncoder(tokenizer, prompt_format=self.config.model.prompt_format,
                                          max_length=self.settings().max_length)
        return self._encoder

    def serve(self, work: Work, sink: Sink) -> dict[str, list[str]]:
        if not self.served:
            self.subjects(self.config)
        notes: dict[str, list[str]] = {subject.name: [] for subject, _ in work}
        if not self.capabilities.seeded_sampling:
            for subject, requests in work:
                if any(isinstance(r, GenerateRequest) and r.temperature > 0 for r in requests):
                    notes[subject.name].append(f"sampled generations are not reproducible: "
                                               f"{self.capabilities.why_not('seeded_sampling')}")
        # LoRA subjects never in flight together with the rest: a vLLM server batches concurrent requests, and on
        # its CPU build a request without a LoRA in a batch with LoRA requests gets the last adapter slot (upstream
        # PRs #48421/#49656; found by tests/test_backend_vllm.py)
        for phase in ([w for w in work if w[0].kind != "adapter"], [w for w in work if w[0].kind == "adapter"]):
            if phase:
                self._serve_concurrently(phase, sink)
        return notes

    def _serve_concurrently(self, work: Work, sink: Sink) -> None:
        """Every request of `work` in flight at once (up to `max_concurrency`); finished batches to `sink`."""
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            pending: dict[Future[Response], tuple[Subject, Request]] = {}
            left = {subject.name: len(requests) for subject, requests in work}
            for subject, requests in work:
                model = self.served[subject.name]
                for request in requests:
                    pending[pool.submit(self._answer, model, request)] = (subject, request)
            done: dict[str, list[tuple[Request, Response]]] = {name: [] for name in left}
            try:
                for future in as_completed(list(pending)):
                    subject, request = pending.pop(future)
                    done[subject.name].append((request, future.result()))
                    left[subject.name] -= 1
                    if len(done[subject.name]) >= _BATCH or not left[subject.name]:
                        sink(subject, [r for r, _ in done[subject.name]], [x for _, x in done[subject.name]])
                        done[subject.name] = []
            except BaseException:
                for future in pending:
                    future.cancel()
                raise

    def _answer(self, model: str, request: Request) -> Response:
        encoder = self.encoder()
        if isinstance(request, ScoreRequest):
            encoded = encoder.encode_score(request)
            ids = encoded.context + encoded.continuation
            choice = self._completion(model, ids, {"max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0})
            logprobs = choice.get("logprobs") or {}
            token_lps = logprobs.get("token_logprobs") or []
            tops = logprobs.get("top_logprobs") or []
            span = range(len(encoded.context), len(ids))
            if len(token_lps) < len(ids) or any(token_lps[i] is None for i in span):
                raise RunFailure(f"{self.url}: model {model!r} echoed {len(token_lps)} prompt log-probs for "
                                 f"{len(ids)} prompt tokens")
            values = tuple(float(token_lps[i]) for i in span)
            greedy = tuple(
                bool(i < len(tops) and tops[i] and float(token_lps[i]) >= max(map(float, tops[i].values())) - 1e-6)
                for i in span)
            return ScoreResponse(values, greedy, truncated=encoded.truncated)
        prompt = encoder.encode_prompt(request)
        body: dict[str, Any] = {"max_tokens": request.max_new_tokens, "temperature": request.temperature,
                                "top_p": request.top_p, "seed": request.seed}
        if self.returns_token_ids():  # decode and cut here, as every backend does
            choice = self._completion(model, prompt.ids, {**body, **_AS_IDS})
            tokens = _token_ids(choice)
            if tokens is None:
                raise RunFailure(f"{self.url}: model {model!r} returned no token ids for a generation")
            reason = "length" if choice.get("finish_reason") == "length" else "eos"
            return finish_generation(encoder.tokenizer, tokens, reason, request.stop, truncated=prompt.truncated)
        if request.stop:
            body["stop"] = list(request.stop)
        choice = self._completion(model, prompt.ids, body)
        text = str(choice.get("text") or "")
        n_tokens = int(choice.get("_completion_tokens", 0)) or len(encoder.encode_text(text))
        reason = choice.get("finish_reason")
        stop_reason = choice.get("stop_reason")
        if reason == "length":
            finish = "length"
        elif request.stop and (stop_reason in request.stop or any(s in text for s in request.stop)):
            finish = "stop"
        else:
            finish = "eos"
        for stop in request.stop:  # servers exclude the stop string; cut anyway where one does not
            if stop in text:
                text = text[: text.find(stop)]
        return GenerateResponse(text, n_tokens, finish, truncated=prompt.truncated)  # type: ignore[arg-type]

    def _completion(self, model: str, ids: Sequence[int], body: dict[str, Any]) -> dict[str, Any]:
        """The first choice of a `/completions` call on token ids."""
        data = self._call("POST", "/completions", {"model": model, "prompt": list(ids), **body})
        choices = data.get("choices") or []
        if not choices:
            raise RunFailure(f"{self.url}/completions: no choices in the response for model {model!r}")
        choice = dict(choices[0])
        choice["_completion_tokens"] = (data.get("usage") or {}).get("completion_tokens", 0)
        return choice

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        """One JSON request to the configured URL, retried with backoff on 429/5xx and dropped connections."""
        endpoint = f"{self.url}{path}"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise InputError(f"[backend] api_key_env names {self.api_key_env!r}, which is not set")
            headers["Authorization"] = f"Bearer {key}"
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(0.25 * 2 ** (attempt - 1), 8.0))
            request = urllib.request.Request(endpoint, data=body, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # only the configured URL
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:300]
                last = f"HTTP {exc.code}: {detail}"
                if exc.code not in _RETRY_STATUS:
                    raise RunFailure(f"{endpoint}: {last}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last = f"{getattr(exc, 'reason', exc)}"
            except ValueError as exc:
                raise RunFailure(f"{endpoint}: the response is not JSON ({exc})") from None
        raise RunFailure(f"{endpoint}: no answer after {self.max_retries + 1} attempt(s) ({last}); is the server "
                         "running and the URL right?")

    # ----------------------------------------------------------------- provenance
    def environment(self) -> dict[str, str]:
        env = {"backend": "server", "url": self.url, "base_model": self.base_model, "device": f"server {self.url}",
               "transformers": package_version("transformers"), "settings_key": self.settings().key[:16]}
        if self._capabilities is not None:
            env |= self._capabilities.as_strings()
            env["generation_text"] = ("decoded here from the generated token ids" if self._token_ids else
                                      "the server's own detokenized text (it returns no token ids)")
        env |= {f"subject.{name}": how for name, how in self.identity.items()}
        return env

    def close(self) -> None:
        """Nothing is held open between requests."""


def _token_ids(choice: dict[str, Any]) -> list[int] | None:
    """The generated token ids of a choice asked with `_AS_IDS`, or None where the server ignored the extension."""
    tokens = (choice.get("logprobs") or {}).get("tokens")
    if not isinstance(tokens, list):
        return None
    ids = [re.fullmatch(r"token_id:(\d+)", t) if isinstance(t, str) else None for t in tokens]
    return [int(m.group(1)) for m in ids] if all(ids) else None  # type: ignore[union-attr]
