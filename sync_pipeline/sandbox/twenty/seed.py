"""Deterministic demo data: uuid5 ids, stable names / e-mails / domains, fixed timestamps."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from .records import RecordStore
from .schema import OBJECTS, OPPORTUNITY_STAGES, format_timestamp, new_record

SEED_NAMESPACE = uuid.UUID("6f1c1e4a-2b43-4a57-9d0e-3a1f5c0b7e21")
SEED_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
SEED_ACTOR: dict[str, Any] = {"source": "IMPORT", "workspaceMemberId": None, "name": "seed", "context": {}}

COMPANY_WORDS = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Cyberdyne",
)
COMPANY_SUFFIXES = ("Labs", "Systems", "Industries", "Partners", "Logistics", "Foods", "Energy", "Media")
FIRST_NAMES = (
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis",
    "Barbara", "Ken", "Frances", "Edsger", "Radia", "Tim",
)
LAST_NAMES = (
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton",
    "Ritchie", "Liskov", "Thompson", "Allen", "Dijkstra",
)
CITIES = ("Paris", "Berlin", "London", "Lisbon", "Madrid", "Rome", "Vienna", "Prague")


def seed_id(kind: str, index: int) -> str:
    return str(uuid.uuid5(SEED_NAMESPACE, f"{kind}:{index}"))


def _stamp(index: int) -> str:
    return format_timestamp(SEED_EPOCH + dt.timedelta(minutes=index))


def _system(kind: str, index: int) -> dict[str, Any]:
    return {
        "id": seed_id(kind, index),
        "position": index + 1,
        "createdBy": dict(SEED_ACTOR),
        "updatedBy": dict(SEED_ACTOR),
        "createdAt": _stamp(index),
        "updatedAt": _stamp(index),
    }


def company_row(index: int) -> dict[str, Any]:
    word = COMPANY_WORDS[index % len(COMPANY_WORDS)]
    suffix = COMPANY_SUFFIXES[index // len(COMPANY_WORDS) % len(COMPANY_SUFFIXES)]
    name = f"{word} {suffix} {index:04d}"
    row = new_record(OBJECTS["companies"])
    row.update(_system("company", index))
    row["name"] = name
    domain = f"https://{_slug(name)}.example.com"
    row["domainName"] = {"primaryLinkUrl": domain, "primaryLinkLabel": None, "secondaryLinks": None}
    row["employees"] = 10 + (index * 37) % 5000
    city = CITIES[index % len(CITIES)]
    row["address"] = {**row["address"], "addressCity": city, "addressCountry": "France"}
    return row


def person_row(index: int, company_count: int) -> dict[str, Any]:
    first = FIRST_NAMES[index % len(FIRST_NAMES)]
    last = LAST_NAMES[index // len(FIRST_NAMES) % len(LAST_NAMES)]
    row = new_record(OBJECTS["people"])
    row.update(_system("person", index))
    row["name"] = {"firstName": first, "lastName": last}
    email = f"{first}.{last}.{index:04d}@example.com".lower()
    row["emails"] = {"primaryEmail": email, "additionalEmails": None}
    row["jobTitle"] = ("Engineer", "CTO", "CEO", "Sales", "Designer")[index % 5]
    row["city"] = CITIES[index % len(CITIES)]
    row["companyId"] = seed_id("company", index % company_count) if company_count else None
    return row


def opportunity_row(index: int, company_count: int, person_count: int) -> dict[str, Any]:
    row = new_record(OBJECTS["opportunities"])
    row.update(_system("opportunity", index))
    row["name"] = f"Deal {index:04d}"
    row["amount"] = {"amountMicros": (1000 + index * 250) * 1_000_000, "currencyCode": "EUR"}
    row["stage"] = OPPORTUNITY_STAGES[index % len(OPPORTUNITY_STAGES)]
    row["closeDate"] = format_timestamp(SEED_EPOCH + dt.timedelta(days=30 + index))
    row["companyId"] = seed_id("company", index % company_count) if company_count else None
    row["pointOfContactId"] = seed_id("person", index % person_count) if person_count else None
    return row


def _slug(name: str) -> str:
    return "-".join(name.lower().split())


def seed(store: RecordStore, companies: int, people: int, opportunities: int) -> dict[str, int]:
    """Add the first N seed rows of each object. Idempotent: indexes seeded before (even if later
    deleted) are remembered in the store's meta and never added again."""
    added: dict[str, int] = {}
    wanted = {"companies": companies, "people": people, "opportunities": opportunities}
    # Relations point into everything seeded so far, including earlier runs.
    total = {
        plural: max(count, int(store.meta.get(f"seeded:{plural}", 0))) for plural, count in wanted.items()
    }
    for plural, count in wanted.items():
        done = int(store.meta.get(f"seeded:{plural}", 0))
        if count <= done:
            added[plural] = 0
            continue
        if plural == "companies":
            rows = [company_row(i) for i in range(done, count)]
        elif plural == "people":
            rows = [person_row(i, total["companies"]) for i in range(done, count)]
        else:
            rows = [opportunity_row(i, total["companies"], total["people"]) for i in range(done, count)]
        added[plural] = store.insert_seed_rows(OBJECTS[plural], rows)
        store.set_meta(f"seeded:{plural}", count)
    return added
