"""Which optional install (`pip install 'ppeval[<extra>]'`) provides a missing module, for a clear exit 2."""

from __future__ import annotations

#: top-level module -> the extra that installs it (pyproject.toml [project.optional-dependencies])
_EXTRA_OF_MODULE = {
    "torch": "hf", "transformers": "hf", "peft": "hf", "safetensors": "hf", "tokenizers": "hf",
    "accelerate": "hf", "vllm": "vllm", "ray": "ray",
    "presidio_analyzer": "pii", "presidio_anonymizer": "pii", "spacy": "pii", "tldextract": "pii",
    "fairlearn": "bias", "lm_eval": "accuracy", "datasets": "accuracy", "evaluate": "accuracy",
    "scipy": "run", "sklearn": "run", "faker": "run",
}


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """'… needs `pip install 'ppeval[hf]'`' for a module an extra provides, else None (a genuine bug)."""
    module = (error.name or "").split(".")[0]
    extra = _EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (f"this command needs the Python package {module!r}, which is not installed: "
            f"`pip install 'ppeval[{extra}]'` (or 'ppeval[all]' for every suite and the hf backend)")
