"""A second tokenizer family and architecture for validity tests: Unigram + Metaspace (SentencePiece-style,
its decoder drops the leading space, no BOS added by default) on a tiny GPT-NeoX, unlike the demo's
byte-level BPE Llama with <s>. Metrics must single out planted defects on both.

`make_sp_base` pretrains briefly on `texts`; `train_sp_adapter` fits a LoRA on `texts` in a few seconds.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

NEOX_LORA_TARGETS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
#: a chat template unlike the demo's "role: content" lines, with no BOS of its own
SP_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


_ALPHABET = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?@-'_/()")
_SPECIALS = ["<pad>", "<eos>", "<unk>"]


def _unigram_vocab(texts: Sequence[str], vocab_size: int) -> list[tuple[str, float]]:
    """Unigram pieces and scores, the same in every process. tokenizers' UnigramTrainer is not deterministic (it
    breaks ties through a randomly seeded hash map: each process trained another vocabulary on the same texts, and
    the validity figures moved by nats between runs), its BPE trainer is: the pieces are the BPE trainer's
    (Metaspace "▁" words), each scored by the log of its relative frequency in the texts cut into them."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.NFKC()
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    bpe.train_from_iterator(list(texts) * 3, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=_SPECIALS, initial_alphabet=_ALPHABET, show_progress=False))
    counts = Counter(piece for encoding in bpe.encode_batch(list(texts)) for piece in encoding.tokens)
    ids = bpe.get_vocab()
    pieces = [p for p in sorted(ids, key=ids.__getitem__) if p not in _SPECIALS]
    total = sum(counts.values()) + len(pieces)
    return [(t, 0.0) for t in _SPECIALS] + [(p, math.log((counts[p] + 1) / total)) for p in pieces]


def make_sp_tokenizer(texts: Sequence[str], directory: Path | None = None, vocab_size: int = 400):
    """A Unigram tokenizer with Metaspace pre-tokenizer and decoder (`decode` drops the leading "▁" space),
    the same for the same texts in every process (`_unigram_vocab`)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram(_unigram_vocab(texts, vocab_size), unk_id=_SPECIALS.index("<unk>")))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=256, chat_template=SP_CHAT_TEMPLATE)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(directory)
    return fast


def encode_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Training sequences: each text's ids (no special tokens added) and EOS, cut to the 256-token context."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [[*seq, tokenizer.eos_token_id][:256] for seq in ids]


def train_model(model: torch.nn.Module, sequences: list[list[int]], *, epochs: int, lr: float, seed: int,
                pad_id: int, batch_size: int = 16) -> float:
    """AdamW over right-padded batches in a seeded order; returns the last batch's loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    loss_value = math.nan
    for _ in range(epochs):
        order = torch.randperm(len(sequences), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            batch = [sequences[i] for i in order[start:start + batch_size]]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, seq in enumerate(batch):
                ids[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = loss.item()
    model.eval()
    return loss_value


def make_sp_base(directory: Path, texts: Sequence[str], *, tokenizer_texts: Sequence[str] | None = None,
                 seed: int = 0, hidden: int = 64, layers: int = 2, epochs: int = 3, lr: float = 3e-3) -> Path:
    """A tiny GPT-NeoX with the Unigram tokenizer, pretrained `epochs` on `texts`, saved as safetensors.

    Train the tokenizer on members and non-members alike (`tokenizer_texts`), or the base's MIA AUC moves off 0.5."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tokenizer = make_sp_tokenizer(tokenizer_texts if tokenizer_texts is not None else texts, directory)
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
        num_attention_heads=4, max_position_embeddings=256, rotary_pct=0.25, use_parallel_residual=True,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(config)
    if epochs:
        train_model(model, encode_texts(tokenizer, texts), epochs=epochs, lr=lr, seed=seed,
                    pad_id=tokenizer.pad_token_id)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def train_sp_adapter(base_dir: Path, directory: Path, texts: Sequence[str], *, epochs: int = 20, lr: float = 5e-3,
                     seed: int = 1, rank: int = 16) -> Path:
    """A LoRA (all NeoX linear modules) trained `epochs` on `texts` (repeat a text to plant it more strongly)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(NEOX_LORA_TARGETS),
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    if epochs:
        train_model(peft_model, encode_texts(tokenizer, texts), epochs=epochs, lr=lr, seed=seed,
               pad_id=tokenizer.pad_token_id)
    peft_model.save_pretrained(directory, safe_serialization=True)
    return directory


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread inside the block: on a shared 2-core machine a second thread costs several times the
    CPU for these tiny matrices."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def vocab_size(directory: Path) -> int:
    return len(json.loads((directory / "tokenizer.json").read_text())["model"]["vocab"])
