"""Writes general.jsonl: short general-domain texts from Faker's providers (fixed seed).

Run `python suites/perplexity/data/make_general.py` to regenerate; the file is versioned with the suite.
"""

from __future__ import annotations

import json
from pathlib import Path

from faker import Faker


def main(n: int = 300, seed: int = 1234) -> None:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    lines = []
    for _ in range(n):
        text = f"{fake.catch_phrase()}. {fake.paragraph(nb_sentences=3)} {fake.bs().capitalize()}."
        lines.append(json.dumps({"text": text}))
    (Path(__file__).parent / "general.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
