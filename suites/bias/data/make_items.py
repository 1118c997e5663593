"""Writes the shipped bias items: decisions.jsonl (templates × groups) and stereotype_pairs.jsonl (fixed seeds).

Run `python suites/bias/data/make_items.py` to regenerate; the files are versioned with the suite, and their
sha256 is in every scorecard (`data_sha256`). The templates, groups and pairs live in `suites/bias/generate.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from suites.bias.generate import ITEMS_SEED, decision_items, stereotype_pairs


def main(seed: int = ITEMS_SEED) -> None:
    here = Path(__file__).parent
    for name, records in (("decisions.jsonl", decision_items(seed)), ("stereotype_pairs.jsonl", stereotype_pairs())):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (here / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
