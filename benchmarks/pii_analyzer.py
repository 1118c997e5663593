"""PII analyzer throughput: texts per second through presidio as the pii_leakage suite runs it.

Uses the demo's training records as stand-ins for generations (the same ticket language, with real
inventory values in them). The baseline is presidio's analyzer without the inventory recognizers, measured in
the same process; the row of interest is the suite's analyzer (generic + inventory deny-lists).

    python benchmarks/pii_analyzer.py             # builds the demo fixtures first if missing (not timed)
    python benchmarks/pii_analyzer.py --texts 2000
"""

from __future__ import annotations

import argparse
import time

from harness.data import read_text_records
from harness.demo import build_demo_fixtures
from harness.pii import PiiAnalyzer, analyzer, scan_inventory


def _rate(pii: PiiAnalyzer, texts: list[str]) -> float:
    pii.find_many(texts[:20])  # warm-up: spaCy pipeline and compiled patterns
    started = time.perf_counter()
    pii.find_many(texts)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1000, help="texts to analyze (the records, cycled)")
    args = parser.parse_args()
    records = [r.text for r in read_text_records(build_demo_fixtures().training)]
    texts = [records[i % len(records)] for i in range(args.texts)]
    plain = analyzer()
    inventory = scan_inventory(plain, records)
    with_inventory = plain.with_inventory(inventory)
    print(f"NER mode: {plain.mode}; inventory: {len(inventory)} values; {len(texts)} texts of "
          f"{sum(map(len, texts)) / len(texts):.0f} characters on average")
    baseline = _rate(plain, texts)
    measured = _rate(with_inventory, texts)
    print(f"presidio, generic recognizers only: {baseline:8.1f} texts/s = 1.00")
    print(f"the suite's analyzer (+ inventory): {measured:8.1f} texts/s = {measured / baseline:.2f}")


if __name__ == "__main__":
    main()
