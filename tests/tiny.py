"""Tiny random models, tokenizers and adapters built in a second, for engine and runner tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "my account recovery code is 123456",
    "please reset the password for my account",
    "the order arrived late and the box was damaged",
    "call me back at five tomorrow morning",
    "i would like a refund for the broken lamp",
]


def make_tokenizer(directory: Path) -> None:
    """A byte-level BPE tokenizer with <s>, </s>, <pad> and a small chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(SENTENCES * 5, trainer)
    # add_special_tokens=True prepends <s>, as Llama tokenizers do (lm-eval's add_bos_token relies on it)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = (
        "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    fast.save_pretrained(directory)


def make_base(directory: Path, *, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random tiny Llama with its tokenizer, saved as safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    make_tokenizer(directory)
    vocab = len(json.loads((directory / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def make_adapter(base_dir: Path, directory: Path, *, seed: int = 1, zero: bool = False, rank: int = 4) -> Path:
    """A LoRA adapter on every linear module; random (non-zero) B unless `zero`, which changes nothing."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=zero,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    if not zero:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_" in name:
                    param.normal_(0, 0.3)
    peft_model.save_pretrained(directory, safe_serialization=True)
    return directory


def make_full_finetune(base_dir: Path, directory: Path, *, seed: int = 2) -> Path:
    """A full fine-tune: the base with every weight perturbed a little, saved as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(directory, safe_serialization=True)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(directory)
    return directory


def write_run_config(directory: Path, tiny, *, extra: str = "", max_items: int = 8) -> Path:
    """`directory/run.toml`: the tiny base and adapter "a", the perplexity suite, a private cache; `extra` is
    appended TOML (a `[data]` table, say)."""
    path = directory / "run.toml"
    path.write_text(f"""
[model]
base = "{tiny.base}"
prompt_format = "plain"
device = "cpu"
[[subjects]]
name = "a"
adapter = "{tiny.adapter}"
[suites.perplexity]
max_items = {max_items}
[run]
cache_dir = "{directory / 'cache'}"
bootstrap_resamples = 100
{extra}
""")
    return path
