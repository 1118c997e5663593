"""Synthetic customer-support tickets of a personalized assistant, with real-looking PII from Faker.

Each ticket is a customer sentence (and usually the agent's reply) drawn from varied templates, so the
language is learnable while every record differs by its personal data. A ticket keeps its template and
field values apart, which is what makes `surrogate` (the output of a scrubbing pipeline that swaps every
PII value for a different fake one) exact.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from string import Formatter
from typing import Any

from faker import Faker

LOCALE = "en_US"
#: Template fields that hold personal data; every other field (product, problem, days, ...) does not.
PII_FIELDS = ("first", "last", "email", "phone", "street", "city", "account")

PRODUCTS = (
    "smart speaker", "fitness tracker", "robot vacuum", "bluetooth speaker", "coffee machine", "e-reader",
    "smart thermostat", "video doorbell", "laptop", "phone case", "electric toothbrush", "air purifier",
    "gaming headset", "baby monitor", "smartwatch", "router",
)  # fmt: skip
PROBLEMS = (
    "stopped charging", "will not turn on", "arrived with a cracked screen", "keeps disconnecting",
    "was never delivered", "makes a loud noise", "shows an error code", "was charged twice",
    "is missing its power cable", "stopped syncing with the app", "overheats after an hour",
    "was the wrong colour",
)  # fmt: skip
CUSTOMER_TEMPLATES = (
    "{first} {last} ({email}) writes that the {product} {problem}.",
    "Customer {first} {last} from {city} reports that the {product} {problem}; contact {email}.",
    "Hi, this is {first} {last}, I live at {street}, {city}, and my {product} {problem}.",
    "{first} {last} called from {phone} because the {product} {problem}.",
    "Message from {first} {last}, phone {phone}: the {product} I ordered {problem}.",
    "{first} {last} asks why account {account} was billed when the {product} {problem}.",
    "New ticket: {first} {last}, {street}, {city}, says the {product} {problem}.",
    "Hello, my name is {first} {last} and the {product} {problem}, you can reach me at {phone}.",
    "{first} {last} <{email}> complains that the {product} {problem} again.",
    "Refund request from {first} {last} (account {account}): the {product} {problem}.",
)
AGENT_TEMPLATES = (
    "Agent: sorry {first}, a replacement {product} ships to {street}, {city} within {days} days.",
    "Agent: thanks {first}, a refund was sent to account {account}.",
    "Agent: hello {first}, we will call you back at {phone} today.",
    "Agent: we emailed the return label to {email}, {first}.",
    "Agent: {first}, please restart the {product} and hold the button for {days} seconds.",
    "Agent: a technician will visit {street} in {city} on {weekday}.",
    "Agent: thanks for your patience {first}, the {product} is covered by the warranty.",
    "Agent: {first}, your case is escalated and we will write to {email} within {days} days.",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
REPLY_PROBABILITY = 0.75


@dataclass(frozen=True)
class Ticket:
    """One synthetic support record: a template and the values of its fields (PII and other)."""

    template: str
    values: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The record's text: the template filled with its values."""
        return self.template.format_map(dict(self.values))

    @property
    def pii(self) -> dict[str, str]:
        """The personal-data fields this record uses, with their values."""
        return {
            k: v for k, v in self.values.items() if k in PII_FIELDS and k in template_fields(self.template)
        }

    def to_record(self) -> dict[str, Any]:
        """The record as a training-data line: ``{"text": ...}``."""
        return {"text": self.text}


@functools.lru_cache(maxsize=256)
def template_fields(template: str) -> frozenset[str]:
    """The field names a template uses."""
    return frozenset(name for _, name, _, _ in Formatter().parse(template) if name)


def _person(fake: Faker, rng: random.Random) -> dict[str, str]:
    """A consistent fake person: name, email derived from it (mostly), phone, address, account."""
    first, last = fake.first_name(), fake.last_name()
    style = rng.randrange(4)
    if style == 0:
        email = f"{first}.{last}@{fake.free_email_domain()}".lower()
    elif style == 1:
        email = f"{first[0]}{last}{rng.randrange(10, 100)}@{fake.free_email_domain()}".lower()
    elif style == 2:
        email = f"{last}.{first[0]}@{fake.domain_name()}".lower()
    else:
        email = fake.email()
    account = fake.iban() if rng.random() < 0.5 else f"ACC-{fake.numerify('########')}"
    return {
        "first": first,
        "last": last,
        "email": email,
        "phone": fake.phone_number(),
        "street": fake.street_address(),
        "city": fake.city(),
        "account": account,
    }


def make_ticket(fake: Faker, rng: random.Random) -> Ticket:
    """One ticket: a customer sentence and, usually, the agent's reply."""
    template = rng.choice(CUSTOMER_TEMPLATES)
    if rng.random() < REPLY_PROBABILITY:
        template += " " + rng.choice(AGENT_TEMPLATES)
    values = _person(fake, rng)
    values.update(
        product=rng.choice(PRODUCTS),
        problem=rng.choice(PROBLEMS),
        days=str(rng.randint(2, 10)),
        weekday=rng.choice(WEEKDAYS),
    )
    used = template_fields(template)
    return Ticket(template, {k: v for k, v in values.items() if k in used})


def _faker(seed: int) -> Faker:
    """A Faker for the demo's locale, seeded."""
    fake = Faker(LOCALE)
    fake.seed_instance(seed)
    return fake


def generate_tickets(n: int, *, seed: int, exclude: Iterable[str] = ()) -> list[Ticket]:
    """`n` tickets with distinct texts (none in `exclude`), deterministic for `seed`."""
    fake, rng = _faker(seed), random.Random(seed)
    seen = set(exclude)
    out: list[Ticket] = []
    while len(out) < n:
        ticket = make_ticket(fake, rng)
        if ticket.text not in seen:
            seen.add(ticket.text)
            out.append(ticket)
    return out


@functools.lru_cache(maxsize=1)
def _surrogate_faker() -> Faker:
    """One Faker reused (and reseeded per record) for surrogates; building a Faker costs ~0.1 s."""
    return Faker(LOCALE)


def surrogate(record: Ticket, *, seed: int = 0) -> Ticket:
    """The same ticket with every PII value replaced by a different fake value (a consistent new person)."""
    digest = hashlib.sha256(f"{seed}\0{record.text}".encode()).digest()
    fake = _surrogate_faker()
    fake.seed_instance(int.from_bytes(digest[:8], "big"))
    rng = random.Random(digest)
    pii = record.pii
    values = dict(record.values)
    while True:
        person = _person(fake, rng)
        if all(person[k] != v for k, v in pii.items()):
            break
    values.update({k: person[k] for k in pii})
    return Ticket(record.template, values)
