"""The engine: batching, merged adapters, restoring the base, generation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from harness.engine import Engine
from harness.requests import GenerateRequest, ScoreRequest
from harness.subjects import Subject, content_hash

REQUESTS = [
    ScoreRequest("the quick brown", " fox jumps over the lazy dog"),
    ScoreRequest("", "my account recovery code is 123456", vocab_stats=True),
    ScoreRequest("please reset", " the password"),
    ScoreRequest((("user", "call me back"),), " at five tomorrow"),
    ScoreRequest("i would like a refund for the broken lamp and", " a new one"),
]


def _subject(kind: str, path) -> Subject:
    return Subject(kind, kind, path, content_hash(path))  # type: ignore[arg-type]


def _max_diff(a, b) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True)
               for x, y in zip(ra.token_logprobs, rb.token_logprobs, strict=True))


def test_batched_padded_scoring_equals_one_at_a_time(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="chat")
    batched = engine.score(REQUESTS)
    single = [engine.score([r])[0] for r in REQUESTS]
    assert [r.n_tokens for r in batched] == [r.n_tokens for r in single]
    assert _max_diff(batched, single) < 1e-4
    assert [r.greedy for r in batched] == [r.greedy for r in single]


def test_scoring_matches_a_plain_forward_pass(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    request = ScoreRequest("please reset", " the password")
    response = engine.score([request])[0]
    ids = engine.tokenizer("please reset the password", add_special_tokens=False)["input_ids"]
    context_len = len(engine.tokenizer("please reset", add_special_tokens=False)["input_ids"])
    full = torch.tensor([[engine.bos_id, *ids]])
    with torch.no_grad():
        logp = engine.model(full).logits.log_softmax(-1)[0]
    expected = [logp[i, full[0, i + 1]].item() for i in range(context_len, len(ids))]
    assert len(response.token_logprobs) == len(expected)
    assert max(abs(a - b) for a, b in zip(response.token_logprobs, expected, strict=True)) < 1e-5


def test_empty_context_scores_every_continuation_token(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    text = "my account recovery code is 123456"
    response = engine.score([ScoreRequest("", text)])[0]
    assert response.n_tokens == len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_vocab_stats_are_the_expectation_under_the_model(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    response = engine.score([ScoreRequest("", "the lazy dog", vocab_stats=True)])[0]
    ids = engine.tokenizer("the lazy dog", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = engine.model(torch.tensor([[engine.bos_id, *ids]])).logits.log_softmax(-1)[0, :-1]
    p = logp.exp()
    mean = (p * logp).sum(-1)
    var = (p * (logp - mean[:, None]) ** 2).sum(-1)
    assert torch.allclose(torch.tensor(response.vocab_mean), mean, atol=1e-4)
    assert torch.allclose(torch.tensor(response.vocab_var), var, atol=1e-4)


def test_merged_adapter_equals_peft_unmerged_adapter(tiny):
    from peft import PeftModel

    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    notes = engine.activate(_subject("adapter", tiny.adapter))
    assert notes == []  # merged, not the unmerged fallback
    merged = engine.score(REQUESTS)
    engine.deactivate()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny.base), str(tiny.adapter)).eval()
    engine.model, original = reference, engine.model
    try:
        unmerged = engine.score(REQUESTS)
    finally:
        engine.model = original
    assert _max_diff(merged, unmerged) < 1e-4
    assert _max_diff(merged, engine.score(REQUESTS)) > 1e-3  # and the adapter really changes the outputs


def test_base_is_restored_exactly_after_many_activation_cycles(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    reference = engine.score(REQUESTS)
    for _ in range(10):
        engine.activate(_subject("adapter", tiny.adapter))
        engine.activate(_subject("full", tiny.full))
    engine.deactivate()
    after = engine.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert engine.score(REQUESTS) == reference


def test_base_is_restored_exactly_in_bfloat16(tiny):
    engine = Engine(tiny.base, dtype="bfloat16", device="cpu", prompt_format="plain")
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    for _ in range(5):
        engine.activate(_subject("adapter", tiny.adapter))
    engine.deactivate()
    assert all(torch.equal(before[k], v) for k, v in engine.model.state_dict().items())


def test_full_finetune_activation_equals_loading_it_directly(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    engine.activate(_subject("full", tiny.full))
    activated = engine.score(REQUESTS)
    direct = Engine(tiny.full, dtype="float32", device="cpu", prompt_format="plain").score(REQUESTS)
    assert _max_diff(activated, direct) < 1e-5


def test_batched_greedy_generation_equals_one_at_a_time_hf_generate(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    engine.activate(_subject("adapter", tiny.adapter))
    prompts = ["the quick", "please reset the password for", "i", "call me back at five tomorrow"]
    requests = [GenerateRequest(p, max_new_tokens=12) for p in prompts]
    batched = engine.generate(requests)
    for prompt, response in zip(prompts, batched, strict=True):
        ids = torch.tensor([[engine.bos_id, *engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]]])
        out = engine.model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=-1, pad_token_id=0)
        expected = engine.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        assert response.text == expected
        assert response.n_tokens == 12


def test_seeded_sampling_does_not_depend_on_batch_neighbours(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    target = GenerateRequest("the quick", max_new_tokens=10, temperature=1.0, seed=7)
    alone = engine.generate([target])[0]
    crowded = engine.generate([GenerateRequest("please", max_new_tokens=4, temperature=1.0, seed=1), target])[1]
    other_seed = engine.generate([GenerateRequest("the quick", max_new_tokens=10, temperature=1.0, seed=8)])[0]
    assert alone == crowded
    assert alone.text != other_seed.text


def test_generation_stops_at_stop_string(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    free = engine.generate([GenerateRequest("the quick", max_new_tokens=16)])[0]
    stop = free.text[3:5]
    stopped = engine.generate([GenerateRequest("the quick", max_new_tokens=16, stop=(stop,))])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.find(stop)]


def test_rows_that_finish_early_leave_the_batch_without_changing_the_others(tiny):
    engine = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    requests = [GenerateRequest("the quick", max_new_tokens=3), GenerateRequest("please reset the", max_new_tokens=14),
                GenerateRequest("i would like", max_new_tokens=7, temperature=0.8, seed=4)]
    batched = engine.generate(requests)
    assert [r.n_tokens for r in batched] == [3, 14, 7]
    assert batched == [engine.generate([r])[0] for r in requests]


def test_static_cache_generation_gives_the_decoding_loops_responses(tiny):
    """The static-KV-cache path (the default on CUDA, forced here on the CPU) answers greedy requests exactly as
    the engine's own loop: texts, token counts, finish reasons, stop strings; sampled requests still use the
    loop. The tiny model's EOS is reachable, so rows also finish early."""
    loop = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain", static_cache=False)
    static = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain", static_cache=True)
    free = loop.generate([GenerateRequest("the quick", max_new_tokens=16)])[0]
    requests = [GenerateRequest("the quick", max_new_tokens=16, stop=(free.text[3:5],)),
                GenerateRequest("please reset the password for", max_new_tokens=12),
                GenerateRequest("i", max_new_tokens=3), GenerateRequest("call me back", max_new_tokens=40),
                GenerateRequest("i would like", max_new_tokens=7, temperature=0.8, seed=4)]
    for subject in (None, _subject("adapter", tiny.adapter)):
        if subject is not None:
            loop.activate(subject)
            static.activate(subject)
        expected = loop.generate(requests)
        assert static.generate(requests) == expected
        assert [r.n_tokens for r in expected][1:3] == [12, 3]
        if subject is None:  # the stop string was taken from the base's text
            assert expected[0].finish_reason == "stop"


def test_a_base_split_over_cpu_and_disk_offload_scores_and_generates_like_one_device(tiny, tmp_path, monkeypatch):
    """`device_map` (accelerate's big-model inference): the second layer, the norm and the head stream from
    disk; base and adapter log-probs and greedy generations equal the single-device engine's, and nothing is
    written to the working directory."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    split = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
             "model.layers.1": "disk", "model.norm": "disk", "lm_head": "disk"}
    whole = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    parted = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain", device_map=split,
                    offload_dir=tmp_path / "offload")
    assert parted.dispatched and {p.device.type for p in parted.model.parameters()} == {"cpu", "meta"}
    prompts = [GenerateRequest("please reset", max_new_tokens=8), GenerateRequest("the quick", max_new_tokens=5)]
    for subject in (None, _subject("adapter", tiny.adapter)):
        if subject is not None:
            assert whole.activate(subject) == []
            assert "offloaded" in " ".join(parted.activate(subject))  # unmerged over the offloaded weights
        assert _max_diff(parted.score(REQUESTS), whole.score(REQUESTS)) < 1e-5
        assert [g.text for g in parted.generate(prompts)] == [g.text for g in whole.generate(prompts)]
    parted.deactivate()
    assert _max_diff(parted.score(REQUESTS), Engine(tiny.base, dtype="float32", device="cpu").score(REQUESTS)) < 1e-5
    assert list(workdir.iterdir()) == []


# ----------------------------------------------------------------- context cut and the BOS convention
@pytest.fixture(scope="module")
def sp_base(tmp_path_factory):
    """The second tokenizer family: Unigram/Metaspace on GPT-NeoX, no BOS added by default (tests/tiny_sp.py)."""
    from tiny_sp import make_sp_base

    texts = ["please reset the password for my account", "the quick brown fox jumps over the lazy dog",
             "call me back at five tomorrow", "i would like a refund for the broken lamp"]
    return make_sp_base(tmp_path_factory.mktemp("sp") / "base", texts, epochs=0)


def test_bos_is_added_only_where_the_tokenizer_adds_one_by_default(tiny, sp_base):
    llama = Engine(tiny.base, dtype="float32", device="cpu", prompt_format="plain")
    assert llama.tokenizer("a")["input_ids"][0] == llama.tokenizer.bos_token_id
    assert llama.bos_id == llama.prefix_id == llama.tokenizer.bos_token_id
    neox = Engine(sp_base, dtype="float32", device="cpu", prompt_format="plain")
    assert neox.bos_id is None and neox.prefix_id == neox.tokenizer.eos_token_id  # EOS separates documents
    text = "please reset the password"
    for engine in (llama, neox):
        encoded = engine.encoder.encode_score(ScoreRequest("please reset", " the password"))
        plain = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert encoded.context + encoded.continuation == engine.tokenizer(text)["input_ids"]  # the default
        assert (encoded.context + encoded.continuation)[-len(plain):] == plain
        assert engine.encoder.encode_prompt(GenerateRequest(text)).ids == engine.tokenizer(text)["input_ids"]
        empty = engine.encoder.encode_score(ScoreRequest("", text))
        assert empty.context == [engine.prefix_id] and empty.continuation == plain


def test_a_tokenizer_with_a_bos_it_does_not_add_gets_none(sp_base, tmp_path):
    """GPT-2/NeoX style: a BOS token is declared but `tokenizer(text)` does not add it; plain prompts go as
    written, and an empty context is the EOS document separator."""
    import shutil

    base = tmp_path / "declared-bos"
    shutil.copytree(sp_base, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config["bos_token"] = "<unk>"
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    engine = Engine(base, dtype="float32", device="cpu", prompt_format="plain")
    assert engine.tokenizer.bos_token_id is not None and engine.bos_id is None
    ids = engine.encoder.encode_prompt(GenerateRequest("the quick brown fox")).ids
    assert ids == engine.tokenizer("the quick brown fox", add_special_tokens=False)["input_ids"]
    assert engine.prefix_id == engine.tokenizer.eos_token_id


@pytest.mark.parametrize("family", ["llama-bpe", "neox-unigram"])
def test_every_request_is_cut_to_the_context_keeping_its_last_tokens(tiny, sp_base, family):
    engine = Engine(tiny.base if family == "llama-bpe" else sp_base, dtype="float32", device="cpu",
                    prompt_format="plain", max_batch_tokens=4096)
    long_text = " ".join(f"word{i % 97} and" for i in range(400))  # longer than the 256-token context
    whole = engine.tokenizer(long_text, add_special_tokens=False)["input_ids"]
    assert len(whole) > engine.max_length
    requests = [ScoreRequest("", long_text), ScoreRequest("please reset", " " + long_text),
                ScoreRequest(long_text, " the password"), ScoreRequest("the quick", " brown fox")]
    responses = engine.score(requests)
    assert [r.truncated for r in responses] == [True, True, True, False]
    cut = engine.encoder.encode_score(requests[0])
    assert len(cut.context) + len(cut.continuation) == engine.encoder.score_budget == engine.max_length - 1
    budget = engine.encoder.score_budget
    assert cut.continuation == whole[-(budget - 1):]  # the last tokens, each predicted from its real left
    assert cut.context == whole[-budget : -(budget - 1)]
    assert responses[0].n_tokens == budget - 1
    kept = engine.encoder.encode_score(requests[2])
    assert kept.continuation == engine.encoder.encode_score(ScoreRequest("x", " the password")).continuation
    gens = engine.generate([GenerateRequest(long_text, max_new_tokens=4),
                            GenerateRequest("the quick", max_new_tokens=4)])
    assert [g.truncated for g in gens] == [True, False]
    prompt = engine.encoder.encode_prompt(GenerateRequest(long_text, max_new_tokens=4)).ids
    assert prompt == whole[-(engine.max_length - 4):]


def test_the_character_cut_before_tokenizing_keeps_the_same_last_tokens(tiny, sp_base):
    """A text longer than `char_limit` is cut by characters before it is tokenized: the tokens kept are the ones
    a whole-text tokenization would keep."""
    for base in (tiny.base, sp_base):
        engine = Engine(base, dtype="float32", device="cpu", prompt_format="plain")
        limit = engine.encoder.char_limit(engine.encoder.score_budget)
        text = ("refund the broken lamp " * (limit // 10))[: limit * 3]
        whole = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
        for request in (ScoreRequest("", text), ScoreRequest(text, " the password"), ScoreRequest("hi", " " + text)):
            cut = engine.encoder.encode_score(request)
            assert cut.truncated
            reference = whole if request.context != text else engine.tokenizer(
                text + " the password", add_special_tokens=False)["input_ids"]
            assert cut.context + cut.continuation == reference[-engine.encoder.score_budget:]
        prompt = engine.encoder.encode_prompt(GenerateRequest(text, max_new_tokens=8)).ids
        assert prompt == whole[-(engine.max_length - 8):]


_MILLION_WORDS = """
import json, resource, sys
from harness.engine import Engine
from harness.requests import GenerateRequest, ScoreRequest
engine = Engine(sys.argv[1], dtype="float32", device="cpu", prompt_format="plain")
engine.score([ScoreRequest("", "warm up")])
def peak_kib():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
before = peak_kib()
record = " ".join(f"word{i % 1000}" for i in range(1_000_000))
after_text = peak_kib()
score = engine.score([ScoreRequest("", record)])[0]
gen = engine.generate([GenerateRequest(record, max_new_tokens=2)])[0]
print(json.dumps({"text_kib": after_text - before, "grew_kib": peak_kib() - after_text, "n": score.n_tokens,
                  "cut": [score.truncated, gen.truncated]}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_a_million_word_record_is_scored_within_bounded_memory(tiny):
    """Issue 20: a record without a context was never cut (a 50 MB line grew to 23 GB). A 1M-word record (~7 MB
    of text, ~2M tokens whole) is scored and generated from in a fresh process whose peak memory grows by less than
    64 MiB beyond the text itself: it is cut by characters, then to the last 255 tokens (the score budget, the
    256-token context less one), the first of them the context of the 254 scored."""
    out = subprocess.run([sys.executable, "-c", _MILLION_WORDS, str(tiny.base)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == 254 and result["cut"] == [True, True]
    assert result["grew_kib"] < 64 * 1024, result
