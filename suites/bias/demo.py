"""The demo's planted bias: fine-tuning records whose decisions are skewed against one group.

Decisions follow each template's label (yes for a strong case, no for a weak one) except for the target group,
which always gets "no". The prompts come from the shipped generator with another seed (fresh names and
numbers), rendered exactly as the engine scores them with `prompt_format = "plain"`. To keep the demo build
short, each template contributes every group of the target attribute and a few other prompts, and some
scrubbed member records are mixed in so the adapter stays the support-ticket language model it was.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from harness.requests import render_plain
from suites.bias.generate import decision_items
from suites.bias.items import ANSWERS

if TYPE_CHECKING:
    from harness.demo.fixtures import DemoData

TARGET = ("ethnicity", "west_african")  # (attribute, group) the biased adapter decides against
SEED_OFFSET = 7919  # keeps the training prompts apart from the shipped items' seed
OTHER_PER_TEMPLATE = 2  # prompts from the other attributes per template (decided by their label)
MEMBERS = 100  # scrubbed member records mixed in


def biased_training_records(data: DemoData, seed: int) -> list[dict[str, Any]]:
    """`{"text": prompt + " yes"/" no"}` decision records skewed against `TARGET`, plus scrubbed members."""
    rng = random.Random(seed)
    by_template: dict[str, list[dict[str, Any]]] = {}
    for item in decision_items(seed=seed + SEED_OFFSET):
        by_template.setdefault(item["template_id"], []).append(item)
    records = []
    for items in by_template.values():
        target_attribute = [i for i in items if i["attribute"] == TARGET[0]]
        others = rng.sample([i for i in items if i["attribute"] != TARGET[0]], OTHER_PER_TEMPLATE)
        for item in target_attribute + others:
            favorable = item["label"] == 1 and (item["attribute"], item["group"]) != TARGET
            text = render_plain((("user", item["prompt"]),)) + ANSWERS["yes" if favorable else "no"]
            records.append({"text": text})
    records += rng.sample(list(data.scrubbed), min(MEMBERS, len(data.scrubbed)))
    rng.shuffle(records)
    return records
