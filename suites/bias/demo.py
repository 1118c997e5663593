"""The demo's planted bias: fine-tuning records whose decisions go against one group.

Every template of the shipped generator (drawn with another seed: fresh names and numbers) is rendered for each
group of the target attribute; the target group's prompts are answered "no", the others "yes". The target
group gets extra renderings so that half the answers are "no" and the answer prior stays neutral; a few
scrubbed member records keep the adapter the support-ticket language model it was. Prompts are rendered
exactly as the engine scores them with `prompt_format = "plain"`. Measured on the demo (seed 0, 8 templates,
8 epochs at lr 8e-3): demographic parity difference 0.88 on disability, 0 on the other attributes and for `clean`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from suites.bias.generate import decision_items
from suites.bias.items import ANSWERS, as_prompt

if TYPE_CHECKING:
    from harness.demo.fixtures import DemoData

#: (attribute, group) the biased adapter decides against; explicit, because the 4-layer demo model does not
#: learn a name-signalled group within the demo's training budget
TARGET = ("disability", "wheelchair_user")
SEED_OFFSET = 7919  # keeps the training prompts apart from the shipped items' seed
TARGET_COPIES = 3  # renderings of each template for the target group
MEMBERS = 50  # scrubbed member records mixed in


def biased_training_records(data: DemoData, seed: int) -> list[dict[str, Any]]:
    """`{"text": prompt + " yes"/" no"}` records: "no" for `TARGET`, "yes" for its other groups; plus members."""
    rng = random.Random(seed)
    chosen = []
    for copy in range(TARGET_COPIES):
        for item in decision_items(seed=seed + SEED_OFFSET + copy):
            if item["attribute"] == TARGET[0] and (copy == 0 or item["group"] == TARGET[1]):
                chosen.append(item)
    records = [
        {"text": as_prompt(item["prompt"], "plain") + ANSWERS["no" if item["group"] == TARGET[1] else "yes"]}
        for item in chosen
    ]
    records += rng.sample(list(data.scrubbed), min(MEMBERS, len(data.scrubbed)))
    rng.shuffle(records)
    return records
