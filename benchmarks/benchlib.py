"""Pieces shared by the benchmarks: fixtures (the builders of `scoring.py`), environment lines, timing helpers.

Importing this module (like importing `scoring`) sets the offline environment variables and puts the
repository root on `sys.path`, so the benchmarks run from a source tree without installing ppeval.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from scoring import LORA_TARGETS, SHAPES, Shape, build_adapters, build_base, build_texts, build_tokenizer

__all__ = [
    "LORA_TARGETS", "SHAPES", "PeakMemory", "Shape", "add_bos_post_processor", "build_adapters", "build_base",
    "build_corpus_tokenizer",
    "build_texts", "build_tokenizer", "dir_bytes", "environment_lines", "loadavg", "median", "scratch_dir",
    "start_run", "sync",
]



def start_run(args: Any) -> tuple[torch.device, str]:
    """What every benchmark's `main` does first: quiet transformers, `--threads`, `--device` resolved as the
    engine resolves it, and the size preset (`--size`, else gpu with CUDA and cpu without)."""
    import transformers

    from harness.engine import resolve_device

    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device), args.size or ("gpu" if torch.cuda.is_available() else "cpu")


def loadavg() -> str:
    """The 1/5/15-minute load averages, to print next to every figure measured on a shared machine."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def environment_lines(device: torch.device, size: str, shape: Shape, dtype: str | None = None) -> list[str]:
    import peft
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return [
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}",
        f"device {device} ({name}); torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, "
        f"load average {loadavg()}",
        f"size {size}: Llama hidden {shape.hidden}, {shape.layers} layers, intermediate {shape.intermediate}, "
        f"{shape.heads} heads / {shape.kv_heads} KV, vocab {shape.vocab}, {dtype or shape.dtype}",
    ]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dir_bytes(path: Path) -> int:
    """Bytes of every file under `path` (an adapter's own size on disk)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def scratch_dir(keep: Path | None, prefix: str) -> tuple[Any, Path]:
    """(holder to clean up or None, root): a temporary directory unless `keep` names one to keep."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return None, keep
    holder = tempfile.TemporaryDirectory(prefix=prefix)
    return holder, Path(holder.name)


def build_corpus_tokenizer(directory: Path, corpus: Sequence[str], vocab: int) -> Any:
    """A byte-level BPE tokenizer trained on `corpus` (so that its text gets realistic token counts), with
    `<pad>`, `<s>`, `</s>` as ids 0-2 and a post-processor that prepends `<s>` (see `add_bos_post_processor`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(corpus), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(directory)
    add_bos_post_processor(directory)
    return fast


def add_bos_post_processor(directory: Path) -> None:
    """Make `add_special_tokens=True` prepend `<s>`, as Llama tokenizers do (see tests/tiny.py).

    lm-eval's `add_bos_token=True` relies on it to match the engine, which always puts BOS first.
    """
    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer

    path = directory / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    bos_id = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos_id)])
    tok.save(str(path))
    check = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    ids = check("hello there")["input_ids"]
    assert ids[0] == bos_id and ids[1] != bos_id, f"tokenizer does not prepend <s>: {ids[:4]}"
    assert check("hello there", add_special_tokens=False)["input_ids"] == ids[1:]


class PeakMemory:
    """Peak memory since the last `reset()`.

    CUDA: `torch.cuda.max_memory_allocated` (and `max_memory_reserved`). Host: the kernel's peak resident
    set size `VmHWM` from /proc/self/status, reset by writing 5 to /proc/self/clear_refs (Linux >= 4.0);
    where that is not possible, `resource.getrusage().ru_maxrss`, which cannot be reset (a lifetime peak).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.host_method = "VmHWM (/proc/self/status, reset via /proc/self/clear_refs)"
        try:
            self._clear_refs()
            self._vm("VmHWM")
        except OSError:
            self.host_method = "ru_maxrss (resource.getrusage; lifetime peak, cannot be reset)"

    @staticmethod
    def _clear_refs() -> None:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")

    @staticmethod
    def _vm(field: str) -> int:
        text = Path("/proc/self/status").read_text(encoding="ascii")
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
        if match is None:
            raise OSError(f"no {field} in /proc/self/status")
        return int(match.group(1)) * 1024

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.host_method.startswith("VmHWM"):
            self._clear_refs()

    def host_peak(self) -> int:
        if self.host_method.startswith("VmHWM"):
            return self._vm("VmHWM")
        import resource

        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale

    def host_current(self) -> int:
        try:
            return self._vm("VmRSS")
        except OSError:
            return 0

    def device_peak(self) -> tuple[int, int]:
        """(max allocated, max reserved) on CUDA, else (0, 0)."""
        if self.device.type != "cuda":
            return 0, 0
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device), torch.cuda.max_memory_reserved(self.device)

    def device_current(self) -> int:
        return torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else 0

