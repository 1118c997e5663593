"""The backend seam (issue 17): the runner reads only the `Backend` protocol; a fully cached run imports no torch;
capabilities make metrics missing with the reason; `[execution] backend` still reads; the `server` backend against
a local OpenAI-compatible test server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends import Backend, Capabilities
from harness.config import parse_config
from harness.errors import InputError
from harness.runner import run_evaluation
from harness.testing import FakeBackend

REPO = Path(__file__).parents[1]


def _records(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def _config(tmp_path: Path, tiny, suites: dict, **extra):
    words = ["refund", "order", "lamp", "password", "account", "tomorrow", "invoice", "parcel"]
    members = [f"member {i}: please {words[i % 8]} the {words[(i * 3) % 8]} number {i * 7}" for i in range(40)]
    holdout = [f"holdout {i}: kindly {words[(i + 2) % 8]} my {words[(i * 5) % 8]} code {i * 11}" for i in range(40)]
    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": [{"name": "a", "adapter": str(tiny.adapter)}],
        "data": {"training": str(_records(tmp_path / "train.jsonl", members)),
                 "holdout": str(_records(tmp_path / "holdout.jsonl", holdout))},
        "suites": suites,
        "run": {"cache_dir": str(tmp_path / "cache"), "bootstrap_resamples": 100},
        **extra,
    }
    return parse_config(raw, source="test", base_dir=tmp_path)


def test_the_hf_and_fake_backends_implement_the_protocol(tiny, tmp_path):
    from harness.backends import make_backend

    config = _config(tmp_path, tiny, {"perplexity": {"max_items": 4}})
    assert isinstance(make_backend(config), Backend)
    assert isinstance(FakeBackend(), Backend)


def test_the_runner_asks_the_backend_only_for_what_the_cache_lacks(tiny, tmp_path):
    config = _config(tmp_path, tiny, {"perplexity": {"max_items": 12}})
    fake = FakeBackend(shifts={"a": 1.0})
    first = run_evaluation(config, out_dir=tmp_path / "one", backend=fake)
    assert fake.served == {"base": 12, "a": 12}
    again = FakeBackend(shifts={"a": 1.0})
    second = run_evaluation(config, out_dir=tmp_path / "two", backend=again)
    assert again.served == {} and second.stats.cached == {"base": 12, "a": 12}
    assert first.scorecard.results == second.scorecard.results
    assert first.scorecard.run.engine["backend"] == "fake"  # provenance: RunInfo.engine is filled
    assert first.scorecard.metric("a", "perplexity.mean_nll").delta_vs_base.value > 0


def test_requests_cut_to_the_context_are_counted_in_the_notes(tiny, tmp_path):
    config = _config(tmp_path, tiny, {"perplexity": {"max_items": 12}})
    result = run_evaluation(config, out_dir=tmp_path / "run", backend=FakeBackend(max_length=4))
    notes = result.scorecard.results["a"]["perplexity"].notes
    assert any("12 of this run's 12 requests (all suites) were longer than the model's context (4 tokens" in n
               for n in notes), notes


def test_min_k_pp_is_missing_with_the_reason_when_the_backend_has_no_vocabulary_statistics(tiny, tmp_path):
    config = _config(tmp_path, tiny, {"memorization": {"max_members": 20}})
    blind = FakeBackend(shifts={"a": 0.5}, capabilities=Capabilities(vocab_stats=False))
    result = run_evaluation(config, out_dir=tmp_path / "run", backend=blind)
    suite = result.scorecard.results["a"]["memorization"]
    for key in ("mia.min_k_pp.auc", "mia.min_k_pp.tpr_at_1pct_fpr"):  # every Min-K%++ figure, none dropped silently
        assert key not in suite.metrics
        assert "vocabulary statistics" in suite.missing[key]
    assert "mia.loss.auc" in suite.metrics and "mia_auc" in suite.metrics
    assert "no: " in result.scorecard.run.engine["capability.vocab_stats"]


def test_a_backend_without_prompt_log_probs_refuses_scoring_suites_before_any_work(tiny, tmp_path):
    config = _config(tmp_path, tiny, {"perplexity": {"max_items": 4}})
    fake = FakeBackend(capabilities=Capabilities(prompt_logprobs=False, reasons={"prompt_logprobs": "no echo"}))
    with pytest.raises(InputError, match=r"perplexity score continuations.*no echo"):
        run_evaluation(config, out_dir=tmp_path / "run", backend=fake)
    assert fake.served == {} and not (tmp_path / "run").exists()


def test_the_old_execution_backend_key_still_reads_with_a_deprecation_message(tiny, tmp_path):
    with pytest.warns(FutureWarning, match="write `mode` instead"):
        config = _config(tmp_path, tiny, {}, execution={"backend": "local", "workers": 1})
    assert config.execution.mode == "local"
    with pytest.raises(InputError, match="give `mode` only"):
        _config(tmp_path, tiny, {}, execution={"backend": "local", "mode": "ray"})
    plain = _config(tmp_path, tiny, {})
    assert plain.sha256() == _config(tmp_path, tiny, {}, backend={"kind": "hf"}).sha256()  # default left out


_CACHED_RUN = """
import sys
from harness.cli import main
code = main(["run", sys.argv[1], "--out", sys.argv[2]])
print("torch imported:", "torch" in sys.modules, "exit:", code)
"""


def test_a_fully_cached_run_does_not_import_torch(tiny, tmp_path):
    """The runner keys the cache through the backend's settings (no model load, no torch): a rerun whose every
    response is cached never imports torch (checked in a fresh interpreter)."""
    from harness.cli import main

    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nbase = "{tiny.base}"\nprompt_format = "plain"\ndevice = "cpu"\ndtype = "float32"\n'
                      f'[[subjects]]\nname = "a"\nadapter = "{tiny.adapter}"\n[suites.perplexity]\nmax_items = 6\n'
                      f'[run]\ncache_dir = "{tmp_path / "cache"}"\nbootstrap_resamples = 100\n')
    assert main(["run", str(config), "--out", str(tmp_path / "first")]) == 0
    out = subprocess.run([sys.executable, "-c", _CACHED_RUN, str(config), str(tmp_path / "second")],
                         capture_output=True, text=True, cwd=REPO, check=True)
    assert "torch imported: False exit: 0" in out.stdout, out.stdout + out.stderr[-2000:]
    first = json.loads((tmp_path / "first" / "scorecard.json").read_text())
    second = json.loads((tmp_path / "second" / "scorecard.json").read_text())
    assert first["results"] == second["results"]
    assert second["run"]["engine"]["backend"] == "hf" and second["run"]["env"]["torch"]


# ----------------------------------------------------------------- the server backend against a local test server
class _TinyOpenAI:
    """An OpenAI-compatible `/v1/models` + `/v1/completions` on 127.0.0.1 serving a base (by default the tiny Llama
    as "tiny-base") and LoRA adapters (by default its LoRA as "support-a") with transformers/peft: the echo
    log-probs, greedy and seeded generation a vLLM server gives, computed independently of the harness's engine."""

    def __init__(self, tiny, *, fail_first: int = 0, api_key: str | None = None, base: Path | None = None,
                 adapters: dict[str, Path] | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        base = base or tiny.base
        adapters = adapters if adapters is not None else {"support-a": tiny.adapter}
        self.token_ids = True  # answers vLLM's `return_tokens_as_token_ids` extension
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.models = {"tiny-base": AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()}
        for name, path in adapters.items():
            adapted = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
            self.models[name] = PeftModel.from_pretrained(adapted, str(path)).eval()
        self.fail_first, self.api_key, self.seen_keys = fail_first, api_key, []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload: dict) -> None:
                blob = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [
                    {"id": name, "root": f"/models/{name}", "parent": None if name == "tiny-base" else "tiny-base"}
                    for name in owner.models]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.seen_keys.append(self.headers.get("Authorization"))
                if owner.api_key and self.headers.get("Authorization") != f"Bearer {owner.api_key}":
                    return self._send(401, {"error": "bad key"})
                with owner.lock:
                    if owner.fail_first > 0:
                        owner.fail_first -= 1
                        return self._send(503, {"error": "warming up"})
                    if body["model"] not in owner.models:
                        return self._send(404, {"error": f"model {body['model']} does not exist"})
                    return self._send(200, owner.complete(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def complete(self, body: dict) -> dict:
        torch, tok = self.torch, self.tokenizer
        model, ids = self.models[body["model"]], list(body["prompt"])
        with torch.no_grad():
            if body.get("echo"):
                logp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
                lps = [None] + [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]
                tops = [None] + [{tok.convert_ids_to_tokens(int(logp[i - 1].argmax())): logp[i - 1].max().item(),
                                  tok.convert_ids_to_tokens(ids[i]): lps[i]} for i in range(1, len(ids))]
                return {"choices": [{"text": "", "finish_reason": "length",
                                     "logprobs": {"token_logprobs": lps, "top_logprobs": tops}}],
                        "usage": {"completion_tokens": 1}}
            sample = body.get("temperature", 0) > 0
            if sample:
                torch.manual_seed(body.get("seed", 0))
            out = model.generate(torch.tensor([ids]), max_new_tokens=body["max_tokens"], do_sample=sample,
                                 temperature=body.get("temperature") if sample else None,
                                 top_p=body.get("top_p") if sample else None,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        new = out[0, len(ids):].tolist()
        reason = "length"
        if tok.eos_token_id in new:
            new, reason = new[: new.index(tok.eos_token_id)], "stop"
        text, stop_reason = tok.decode(new, skip_special_tokens=True), None
        for n in range(1, len(new) + 1) if body.get("stop") else ():
            partial = tok.decode(new[:n], skip_special_tokens=True)
            hits = [s for s in body["stop"] if s in partial]
            if hits:
                new, stop_reason, reason = new[:n], hits[0], "stop"
                text = partial[: min(partial.find(s) for s in hits)]
                break
        choice = {"text": text, "finish_reason": reason, "stop_reason": stop_reason}
        if body.get("return_tokens_as_token_ids") and self.token_ids:  # vLLM's extension
            choice["logprobs"] = {"tokens": [f"token_id:{t}" for t in new]}
        return {"choices": [choice], "usage": {"completion_tokens": len(new)}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=[True, False], ids=["token-ids", "text-only"])
def tiny_server(tiny, request):
    """The test server, returning generated token ids as vLLM does, or only texts as other servers do."""
    server = _TinyOpenAI(tiny)
    server.token_ids = request.param
    yield server
    server.close()


def _server_config(tmp_path: Path, tiny, url: str, subjects: list[dict] | None = None, **backend):
    raw = {
        "model": {"base": str(tiny.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": subjects if subjects is not None else [
            {"name": "a", "adapter": str(tiny.adapter), "served_model": "support-a"}],
        "data": {"holdout": str(_records(tmp_path / "holdout.jsonl",
                                         [f"please reset the password for order {i} today" for i in range(10)]))},
        "suites": {"perplexity": {"max_items": 10}},
        "run": {"cache_dir": str(tmp_path / "cache"), "bootstrap_resamples": 100},
        "backend": {"kind": "server", "url": url, "base_model": "tiny-base", "max_concurrency": 4, **backend},
    }
    return parse_config(raw, source="test", base_dir=tmp_path)


def _serve(backend, subjects, requests) -> dict[str, dict[str, object]]:
    got: dict[str, dict[str, object]] = {}

    def sink(subject, answered, responses):
        got.setdefault(subject.name, {}).update({r.key: x for r, x in zip(answered, responses, strict=True)})

    backend.serve([(s, requests) for s in subjects], sink)
    return got


def test_the_server_backend_answers_as_the_hf_backend_does(tiny, tmp_path, tiny_server):
    from harness.backends.hf import HFBackend
    from harness.backends.server import ServerBackend
    from harness.requests import GenerateRequest, ScoreRequest

    config = _server_config(tmp_path, tiny, tiny_server.url)
    server = ServerBackend(config)
    subjects = server.subjects(config)
    requests = [ScoreRequest("the quick brown", " fox jumps over the lazy dog"),
                ScoreRequest("", "my account recovery code is 123456", vocab_stats=True),
                ScoreRequest((("user", "call me back"),), " at five tomorrow"),
                GenerateRequest("please reset the password for", max_new_tokens=12),
                GenerateRequest("the quick", max_new_tokens=16, stop=("e",)),
                GenerateRequest("i would like", max_new_tokens=6, temperature=0.9, seed=3)]
    by_server = _serve(server, subjects, requests)
    hf_config = config.model_copy(update={"backend": config.backend.model_copy(update={"kind": "hf"})})
    by_hf = _serve(HFBackend(hf_config), subjects, requests)
    assert server.capabilities.prompt_logprobs and not server.capabilities.vocab_stats
    for name in ("base", "a"):
        for request in requests[:3]:
            ours, theirs = by_server[name][request.key], by_hf[name][request.key]
            assert max(abs(x - y) for x, y in zip(ours.token_logprobs, theirs.token_logprobs, strict=True)) < 1e-4
            assert ours.greedy == theirs.greedy and ours.vocab_mean is None
        for request in requests[3:5]:  # greedy generations: the same texts, token counts and finish reasons
            assert by_server[name][request.key] == by_hf[name][request.key]
    sampled = requests[5].key
    assert _serve(server, subjects[:1], requests[5:])["base"][sampled] == by_server["base"][sampled]  # seeded


def test_a_run_through_the_server_states_identity_and_matches_the_hf_run(tiny, tmp_path, tiny_server):
    subjects = [{"name": "a", "adapter": str(tiny.adapter), "served_model": "support-a"},
                {"name": "support-a"}]  # named by its served name only: identity unverified
    config = _server_config(tmp_path, tiny, tiny_server.url, subjects)
    result = run_evaluation(config, out_dir=tmp_path / "server")
    engine = result.scorecard.run.engine
    assert engine["backend"] == "server" and "UNVERIFIED" in engine["subject.support-a"]
    assert "content hash of" in engine["subject.a"] and "no: " in engine["capability.vocab_stats"]
    assert engine["generation_text"].startswith("decoded here" if tiny_server.token_ids else "the server's own")
    hf_config = config.model_copy(update={"backend": config.backend.model_copy(update={"kind": "hf"}),
                                          "subjects": config.subjects[:1]})
    hf = run_evaluation(hf_config, out_dir=tmp_path / "hf")
    for name in ("base", "a"):
        ours = result.scorecard.metric(name, "perplexity.mean_nll").value
        assert abs(ours - hf.scorecard.metric(name, "perplexity.mean_nll").value) < 1e-4
    assert result.scorecard.metric("support-a", "perplexity.mean_nll").value == pytest.approx(
        result.scorecard.metric("a", "perplexity.mean_nll").value)
    digest = {s.name: s.sha256 for s in result.scorecard.subjects}
    assert digest["a"] == {s.name: s.sha256 for s in hf.scorecard.subjects}["a"]


def test_the_server_backend_retries_busy_answers_and_sends_the_key_it_never_writes(tiny, tmp_path, monkeypatch):
    server = _TinyOpenAI(tiny, fail_first=3, api_key="sk-test-123")
    try:
        monkeypatch.setenv("PPEVAL_TEST_KEY", "sk-test-123")
        config = _server_config(tmp_path, tiny, server.url, api_key_env="PPEVAL_TEST_KEY", max_retries=4)
        result = run_evaluation(config, out_dir=tmp_path / "run")
        assert result.scorecard.metric("a", "perplexity.mean_nll") is not None
        assert set(server.seen_keys) == {"Bearer sk-test-123"}
        for file in (tmp_path / "run").rglob("*"):
            assert b"sk-test-123" not in file.read_bytes(), file
    finally:
        server.close()


def test_a_server_that_is_down_exits_3_naming_the_endpoint(tiny, tmp_path, capsys):
    import socket

    from harness.cli import main

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nbase = "{tiny.base}"\nprompt_format = "plain"\n'
                      f'[[subjects]]\nname = "support-a"\n[suites.perplexity]\nmax_items = 2\n'
                      f'[backend]\nkind = "server"\nurl = "http://127.0.0.1:{port}/v1"\nbase_model = "tiny-base"\n'
                      f'max_retries = 1\n')
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 3
    assert f"http://127.0.0.1:{port}/v1/models" in capsys.readouterr().err


def test_building_a_server_backend_contacts_nothing(tiny, tmp_path, monkeypatch):
    import socket

    from harness.backends.server import ServerBackend

    def refuse(*args, **kwargs):
        raise AssertionError("network access at construction")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    config = _server_config(tmp_path, tiny, "http://127.0.0.1:9/v1")
    backend = ServerBackend(config)
    assert backend.settings().extra == {"backend": "server", "url": "http://127.0.0.1:9/v1"}


def test_the_vllm_backend_without_vllm_exits_2_naming_the_extra(tiny, tmp_path, monkeypatch, capsys):
    """vLLM is not installed where these tests run: only this refusal is tested, not the backend itself."""
    from harness.cli import main

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nbase = "{tiny.base}"\nprompt_format = "plain"\n'
                      f'[[subjects]]\nname = "a"\nadapter = "{tiny.adapter}"\n[suites.perplexity]\nmax_items = 2\n'
                      f'[run]\ncache_dir = "{tmp_path / "cache"}"\n[backend]\nkind = "vllm"\n')
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'ppeval[vllm]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_server_run_needs_only_the_bases_tokenizer_and_config(tiny, tmp_path, tiny_server, capsys):
    import shutil

    from harness.cli import main

    local = tmp_path / "tokenizer-only"
    shutil.copytree(tiny.base, local, ignore=shutil.ignore_patterns("*.safetensors"))
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nbase = "{local}"\nprompt_format = "plain"\n'
                      f'[[subjects]]\nname = "support-a"\n[suites.perplexity]\nmax_items = 4\n'
                      f'[data]\nholdout = "{_records(tmp_path / "h.jsonl", ["please reset the password"] * 4)}"\n'
                      f'[run]\ncache_dir = "{tmp_path / "cache"}"\nbootstrap_resamples = 100\n'
                      f'[backend]\nkind = "server"\nurl = "{tiny_server.url}"\nbase_model = "tiny-base"\n')
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "out" / "scorecard.json").read_text())
    assert "UNVERIFIED" in card["run"]["engine"]["subject.support-a"]

