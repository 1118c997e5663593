"""Writes the shipped demo-domain tasks' data (seeded): support tickets where the agent greets the customer.

`support_name_mc` asks which first name follows the agent's greeting (the customer's, among four);
`support_name_gen` asks the model to generate it. Both test reading a ticket in the demo's domain, so
fine-tuning on tickets moves them. Run `python suites/accuracy/tasks/make_tasks.py` to regenerate.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from harness.demo.corpus import generate_tickets

SEED = 9001  # disjoint from the demo's member, hold-out and pretraining draws
N_DOCS = 120
_GREETING = re.compile(r"^(?P<context>.* Agent: (?:sorry|thanks|hello))(?P<name> [A-Z][a-z]+),")


def main() -> None:
    rng = random.Random(SEED)
    tickets = generate_tickets(4000, seed=SEED)
    docs = []
    names = sorted({t.values["first"] for t in tickets if "first" in t.values})
    for ticket in tickets:
        match = _GREETING.match(ticket.text)
        if not match:
            continue
        name = match.group("name").strip()
        distractors = rng.sample([n for n in names if n != name], 3)
        choices = [name, *distractors]
        rng.shuffle(choices)
        docs.append({"context": match.group("context"), "choices": choices, "gold": choices.index(name),
                     "answer": name})
        if len(docs) == N_DOCS:
            break
    out = Path(__file__).parent / "support_names.jsonl"
    out.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")


if __name__ == "__main__":
    main()
