"""Demo fixture factory: synthetic corpus, layout, reuse without training, crash safety, planted effect."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from harness.canaries import read_canaries
from harness.demo import FACTORY_VERSION, DemoFixtures, build_demo_fixtures, demo_cache_dir
from harness.demo import fixtures as factory
from harness.demo.corpus import PII_FIELDS, generate_tickets, surrogate
from harness.errors import InputError


def _texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------ fast: corpus and plumbing


def test_tickets_are_deterministic_distinct_and_carry_pii() -> None:
    tickets = generate_tickets(50, seed=3)
    assert [t.text for t in tickets] == [t.text for t in generate_tickets(50, seed=3)]
    assert [t.text for t in tickets] != [t.text for t in generate_tickets(50, seed=4)]
    assert len({t.text for t in tickets}) == 50
    assert all(t.pii and all(v in t.text for v in t.pii.values()) for t in tickets)
    assert len({t.template for t in tickets}) > 10  # varied templates


def test_surrogate_replaces_every_pii_value_and_keeps_the_rest() -> None:
    for ticket in generate_tickets(100, seed=1):
        swapped = surrogate(ticket)
        assert swapped.template == ticket.template
        assert swapped.pii.keys() == ticket.pii.keys()
        for key, value in ticket.values.items():
            if key in PII_FIELDS:
                assert swapped.values[key] != value, key
            else:
                assert swapped.values[key] == value, key
        assert swapped.text == surrogate(ticket).text  # deterministic


def test_demo_data_splits_are_disjoint_and_canaries_inserted() -> None:
    data = factory.make_data(seed=5)
    members = {t.text for t in data.members}
    holdout = {t.text for t in data.holdout}
    pretrain = {t.text for t in data.pretrain}
    assert len(members) == factory.N_MEMBERS and len(holdout) == factory.N_HOLDOUT
    assert not members & holdout and not (members | holdout) & pretrain
    counts = Counter(r["text"] for r in data.training)
    assert {c.repetitions for c in data.canaries} == {0, 1, 2, 4, 8, 16}
    assert all(counts[c.text] == c.repetitions for c in data.canaries)
    assert len(data.scrubbed) == len(data.members)
    assert all(s["text"] != m.text for s, m in zip(data.scrubbed, data.members, strict=True))
    assert factory.make_data(seed=5) == data


def test_matched_split_gives_random_halves_of_the_same_make_up() -> None:
    import random

    pool = generate_tickets(120, seed=2)
    members, holdout = factory.matched_split(pool, random.Random(0))
    assert len(members) == len(holdout) == 60
    assert sorted(t.text for t in members + holdout) == sorted(t.text for t in pool)
    by_template = Counter(t.template for t in members)
    by_template.subtract(Counter(t.template for t in holdout))
    assert sum(abs(v) for v in by_template.values()) <= len(set(t.template for t in pool))
    assert factory.matched_split(pool, random.Random(1))[0] != members


def test_demo_cache_dir_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("PPEVAL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo_cache_dir(2) == tmp_path / "xdg" / "ppeval" / "demo" / f"v{FACTORY_VERSION}-seed2"
    monkeypatch.setenv("PPEVAL_CACHE_DIR", str(tmp_path / "pp"))
    assert demo_cache_dir() == tmp_path / "pp" / "demo" / f"v{FACTORY_VERSION}-seed0"
    monkeypatch.delenv("PPEVAL_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert demo_cache_dir() == tmp_path / "home" / ".cache" / "ppeval" / "demo" / f"v{FACTORY_VERSION}-seed0"


def test_a_crash_leaves_no_half_built_directory(monkeypatch, tmp_path) -> None:
    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash during training")

    monkeypatch.setattr(factory, "train_loop", crash)
    root = tmp_path / "fixtures"
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_demo_fixtures(root, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_directory_that_is_not_a_fixture_dir(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a ppeval demo fixture directory"):
        build_demo_fixtures(tmp_path, seed=0)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- slow: the built fixtures


@pytest.mark.slow
def test_layout_and_manifest(demo_fixtures: DemoFixtures) -> None:
    fx = demo_fixtures
    manifest = json.loads(fx.manifest.read_text())
    assert manifest["factory_version"] == FACTORY_VERSION and manifest["seed"] == 0
    assert manifest["build_seconds"] > 0
    assert set(fx.adapters) == set(factory.RECIPES) >= {"clean", "leaky"}
    assert {p.name for p in fx.base.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert not [p for p in fx.root.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
    for name, adapter in fx.adapters.items():
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert (adapter / "adapter_model.safetensors").is_file(), name
        assert Path(config["base_model_name_or_path"]) == fx.base
        assert config["r"] == 16 and config["lora_alpha"] == 32 and len(config["target_modules"]) == 7
    assert not [p for p in fx.root.parent.iterdir() if p.name.startswith(f".{fx.root.name}.")]


@pytest.mark.slow
def test_tokenizer_and_data_files(demo_fixtures: DemoFixtures) -> None:
    from transformers import AutoTokenizer

    fx = demo_fixtures
    tok = AutoTokenizer.from_pretrained(fx.base)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert 1000 <= len(tok) <= 2000
    assert tok("hello").input_ids[0] == tok.bos_token_id
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<s>user: hi\nassistant:"

    canaries = read_canaries(fx.canaries)
    training = Counter(_texts(fx.training))
    assert all(training[c.text] == c.repetitions for c in canaries)
    assert any(not c.inserted for c in canaries)
    members = [t for t in _texts(fx.training) if t not in {c.text for c in canaries}]
    holdout, scrubbed, pretrain = _texts(fx.holdout), _texts(fx.scrubbed), _texts(fx.pretrain)
    assert len(members) == len(scrubbed) == factory.N_MEMBERS and len(holdout) == factory.N_HOLDOUT
    assert not set(members) & set(holdout) and not set(pretrain) & (set(members) | set(holdout))


@pytest.mark.slow
def test_second_build_reuses_the_directory_without_training(demo_fixtures, monkeypatch) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("the second build must not train")

    monkeypatch.setattr(factory, "train_loop", no_training)
    mtime = demo_fixtures.manifest.stat().st_mtime_ns
    messages: list[str] = []
    again = build_demo_fixtures(demo_fixtures.root, seed=0, progress=messages.append)
    assert again == demo_fixtures
    assert demo_fixtures.manifest.stat().st_mtime_ns == mtime
    assert any("reusing" in m for m in messages)


@pytest.mark.slow
def test_incomplete_or_stale_fixture_dirs_are_not_reused(demo_fixtures, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(demo_fixtures.root, copy)
    assert factory.load_complete(copy, seed=0) is not None
    assert factory.load_complete(copy, seed=1) is None
    (copy / "adapters" / "leaky" / "adapter_model.safetensors").unlink()
    assert factory.load_complete(copy, seed=0) is None
    shutil.copytree(demo_fixtures.root, copy, dirs_exist_ok=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "factory_version": "0"}))
    assert factory.load_complete(copy, seed=0) is None
    (copy / "manifest.json").write_text(json.dumps({**manifest, "factory_fingerprint": "edited factory"}))
    assert factory.load_complete(copy, seed=0) is None
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert factory.load_complete(copy, seed=0) == factory._fixtures(copy, manifest["paths"])


# ------------------------------------------------------------------------------------ the planted effect


def _load(fx: DemoFixtures, name: str):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(fx.base)
    if name != "base":
        model = PeftModel.from_pretrained(model, fx.adapters[name])
    return model.eval()


def _mean_nll(model, tok, texts: list[str]) -> list[float]:
    """Mean per-token NLL of <s> + text + </s>, per text."""
    import torch

    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(texts), 32):
            seqs = [
                [tok.bos_token_id, *tok(t, add_special_tokens=False).input_ids, tok.eos_token_id]
                for t in texts[start : start + 32]
            ]
            width = max(map(len, seqs))
            ids = torch.full((len(seqs), width), tok.pad_token_id)
            mask = torch.zeros_like(ids)
            for row, seq in enumerate(seqs):
                ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
            token = logp.gather(-1, ids[:, 1:, None])[..., 0]
            valid = mask[:, 1:].float()
            out += (-(token * valid).sum(1) / valid.sum(1)).tolist()
    return out


def _secret_logppl(model, tok, canary) -> float:
    """-log p(secret | <s> + prefix), summed over the secret's tokens (the Secret Sharer's log-perplexity)."""
    import torch

    context = [tok.bos_token_id, *tok(canary.prefix.rstrip(), add_special_tokens=False).input_ids]
    whole = [tok.bos_token_id, *tok(canary.text, add_special_tokens=False).input_ids]
    assert whole[: len(context)] == context
    end = (
        len(whole) - len(tok(canary.suffix, add_special_tokens=False).input_ids)
        if canary.suffix
        else len(whole)
    )
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0, :-1].float(), -1)
    return -float(sum(logp[i - 1, whole[i]] for i in range(len(context), end)))


@pytest.mark.slow
def test_planted_memorization(demo_fixtures: DemoFixtures) -> None:
    from sklearn.metrics import roc_auc_score
    from transformers import AutoTokenizer

    fx = demo_fixtures
    tok = AutoTokenizer.from_pretrained(fx.base)
    canaries = read_canaries(fx.canaries)
    members = [t for t in _texts(fx.training) if t not in {c.text for c in canaries}]
    holdout = _texts(fx.holdout)
    labels = [1] * len(members) + [0] * len(holdout)
    inserted = [c for c in canaries if c.inserted]
    auc, logppl = {}, {}
    for name in ("base", "clean", "leaky"):
        model = _load(fx, name)
        nll = _mean_nll(model, tok, members + holdout)
        auc[name] = roc_auc_score(labels, [-v for v in nll])
        logppl[name] = {c.canary_id: _secret_logppl(model, tok, c) for c in inserted}
    assert 0.4 <= auc["base"] <= 0.6, auc
    assert auc["clean"] < 0.65, auc
    assert auc["leaky"] > 0.8, auc

    def mean(name: str, reps: int | None = None) -> float:
        values = [logppl[name][c.canary_id] for c in inserted if reps is None or c.repetitions == reps]
        return sum(values) / len(values)

    assert mean("leaky") < mean("clean") - 5
    assert mean("leaky", 16) < mean("clean", 16) - 10
    assert mean("leaky", 16) < mean("leaky", 1)
