"""Placebo profiles: the same slots as an item's profile, with values the item never mentions.

`opp_margin` contrasts the profile with its placebo, so a habit that follows any profile (an "As someone who ..."
opening whatever the memory says) cancels and what remains is the use of *this* profile. A slot's placebo value
is drawn, seeded by the run seed, the item and the slot, from the same slot (attribute id) of other items,
preferring other domains, then the same category, then any slot of the same group (Art. 9, Art. 10,
quasi-identifier, other); the shipped items are the fallback pool for a small items file. A donor never
matches any of the item's own attributes or texts (request, continuations) and never repeats within a profile.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import cache

from harness.errors import InputError
from suites.overpersonalization.items import Attribute, Item
from suites.overpersonalization.mentions import alias_spans, is_phone_like, tokenize


class DonorPool:
    """Attributes that may lend a placebo value, indexed by slot, category and group: the items' own first, then
    the fallback (the shipped set) for slots the items cannot fill."""

    def __init__(self, items: Sequence[Item], fallback: Sequence[Item] = ()) -> None:
        self.tiers = [_Index(items), _Index(fallback)]

    def candidates(self, item: Item, slot: Attribute) -> Iterable[list[Attribute]]:
        """Candidate lists, best first: same slot in another domain, same slot, same category, same group, any."""
        for index in self.tiers:
            same_slot = index.by_key.get(("id", slot.id), [])
            yield _distinct(a for d, a in same_slot if d != item.domain)
            yield _distinct(a for _, a in same_slot)
            yield _distinct(a for _, a in index.by_key.get(("category", slot.category), []))
            yield _distinct(a for _, a in index.by_key.get(("group", slot.group), []))
            yield _distinct(a for _, a in index.every)


class _Index:
    def __init__(self, items: Sequence[Item]) -> None:
        self.every = [(i.domain, a) for i in items for a in i.profile]
        self.by_key: dict[tuple[str, str], list[tuple[str, Attribute]]] = {}
        for domain, a in self.every:
            for key in (("id", a.id), ("category", a.category), ("group", a.group)):
                self.by_key.setdefault(key, []).append((domain, a))


def _distinct(attributes: Iterable[Attribute]) -> list[Attribute]:
    """Candidates once per value, in a stable order (so the seeded choice does not depend on pool duplicates)."""
    seen: dict[str, Attribute] = {}
    for a in attributes:
        seen.setdefault(a.value, a)
    return [seen[v] for v in sorted(seen)]


@cache
def _stems(text: str) -> tuple[str, ...]:
    return tuple(t.stem for t in tokenize(text))


def _names(text: str, stems: Sequence[str], attribute: Attribute) -> bool:
    """`attribute_spans(text, attribute)` is not empty (whole-word aliases, digits for phone numbers), with the
    text's stems computed once."""
    for alias in attribute.aliases:
        if is_phone_like(alias):
            if alias_spans(text, (), alias):
                return True
            continue
        want = _stems(alias)
        n = len(want)
        if n and any(tuple(stems[i:i + n]) == want for i in range(len(stems) - n + 1)):
            return True
    return False


def _clashes(donor: Attribute, item: Item, texts: Sequence[tuple[str, tuple[str, ...]]], taken: set[str]) -> bool:
    """The donor would say something about this item: it equals or names one of its attributes or texts."""
    if donor.value in taken or any(donor.value == a.value for a in item.profile):
        return True
    if any(_names(text, stems, donor) for text, stems in texts):
        return True
    return any(_names(donor.value, _stems(donor.value), own) for own in item.profile)


def placebo_profile(item: Item, pool: DonorPool, seed: int) -> tuple[Attribute, ...]:
    """The item's profile with every value replaced by a seeded donor value (see the module docstring)."""
    texts = [(t, _stems(t)) for t in (item.request, item.neutral_continuation,
                                      *item.personalized_continuations.values())]
    taken: set[str] = set()
    out = []
    for slot in item.profile:
        rng = random.Random(f"ppeval-placebo\0{seed}\0{item.item_id}\0{slot.id}")
        donor = None
        for candidates in pool.candidates(item, slot):
            rng.shuffle(candidates)
            donor = next((a for a in candidates if not _clashes(a, item, texts, taken)), None)
            if donor is not None:
                break
        if donor is None:
            raise InputError(f"item {item.item_id!r}: no placebo value for slot {slot.id!r} (every candidate "
                             "value is named by the item)")
        taken.add(donor.value)
        out.append(replace(slot, value=donor.value, aliases=donor.aliases))
    return tuple(out)


#: the shipped items' personalized opening (`make_items.personalized`): the attribute said of the user
PERSONAL_FRAME = "As someone who {value}, "
#: the same words with one word changed: the attribute is said of someone the user is not
CONTRAST_FRAME = "Unlike someone who {value}, "
#: how a contrast continuation was made, in the order the notes count them
CONTRAST_SOURCES = ("reframed", "given", "from the neutral answer")


def contrast_continuation(item: Item, attribute: Attribute) -> tuple[str, str]:
    """The placebo of `adapter_attribute_shift` for one personalized continuation: the same attribute words in a
    frame that does not ascribe the attribute to the user, and how it was made (one of `CONTRAST_SOURCES`).

    "As someone who has asthma, pack a salad." becomes "Unlike someone who has asthma, pack a salad.": a minimal
    pair, one word apart, so that a prior shift of the value's words (or of the answer) cancels and few tokens
    are left for a shift of anything else to act on. An item's own `contrast_continuations` win; a
    personalized continuation of another form is contrasted with the frame and the neutral answer."""
    given = item.contrast_continuations.get(attribute.id)
    if given:
        return given, "given"
    personal = item.personalized_continuations[attribute.id]
    opening = PERSONAL_FRAME.format(value=attribute.value)
    contrast = CONTRAST_FRAME.format(value=attribute.value)
    if personal.startswith(opening):
        return contrast + personal[len(opening):], "reframed"
    neutral = item.neutral_continuation
    return contrast + neutral[:1].lower() + neutral[1:], "from the neutral answer"
