"""What the next sync would do, with nothing written anywhere: `sync-pipeline plan` and the `sync_plan` job.

Every source is captured and every entity resolved as a sync would, inside one hub transaction that is rolled
back (`Hub.rolled_back`), with no change-log row dropped and no cursor moved; what each target would be sent
is read from the hub instead of written. Store reads only: nothing is published, nothing pruned. (The hub's
sequences, which no transaction rolls back, move on: a later sync's inbox ids have a gap.)"""


from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sync_pipeline import pipeline
from sync_pipeline.engine.adoption import AdoptionReport, refusal
from sync_pipeline.hub.hub import Hub
from sync_pipeline.hub.plan import publish_forecast, run_conflicts, run_links, run_quarantined
from sync_pipeline.model.entities import ENTITIES
from sync_pipeline.redaction import redact_text
from sync_pipeline.settings import SyncSettings
from sync_pipeline.stores.base import Source, SourceStore, Target, TargetStore
from sync_pipeline.stores.registry import STORES

COUNTS = ["insert", "update", "delete", "conflicts", "quarantine", "link"]
SUMMARY_COLUMNS = ["store", "entity", *COUNTS]
CONFLICT_COLUMNS = ["entity", "record_id", "incoming_store", "golden_store", "winner_store", "resolution",
                    "fields"]
QUARANTINE_COLUMNS = ["store", "entity", "record_id", "reason"]
LINK_COLUMNS = ["store", "entity", "record_id", "detail"]
ADOPTION_COLUMNS = ["store", "entity", "policy", "linked", "new", "unmatched", "overwrites", "store_wins",
                    "others_win"]
FAILURE_COLUMNS = ["store", "entity", "step", "error"]


@dataclass
class SyncPlan:
    """What the next sync would do, per store and entity, with the records behind the counts."""

    threshold: int
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    adoptions: list[AdoptionReport] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # a store the plan could not read

    def add(self, store: str, entity: str, **counts: int) -> None:
        row = self.counts.setdefault((store, entity), dict.fromkeys(COUNTS, 0))
        for name, n in counts.items():
            row[name] += n

    def summary(self) -> list[dict[str, Any]]:
        return [{"store": store, "entity": entity, **counts}
                for (store, entity), counts in self.counts.items()]

    def totals(self) -> dict[str, int]:
        return {name: sum(c[name] for c in self.counts.values()) for name in COUNTS}

    def adoption_rows(self) -> list[dict[str, Any]]:
        return [{"store": r.store, "entity": r.entity, "policy": r.policy, **r.counts()}
                for r in self.adoptions]

    @property
    def confirmation_needed(self) -> str | None:
        """Why the sync would refuse to adopt without the operator's confirmation, or None."""
        return refusal(self.adoptions, self.threshold)


def plan_sync(hub: Hub, stores: Sequence[Any], settings: SyncSettings,
              unavailable: Sequence[dict[str, Any]] = ()) -> SyncPlan:
    """Capture every source, resolve every entity and forecast the publishing to every target, as the next
    sync would, and roll it all back. A store that fails is listed in `failures` (with the `unavailable`
    ones, which could not even be opened); the others are planned."""
    run_id = f"plan-{uuid.uuid4()}"
    plan = SyncPlan(settings.adoption_confirm_threshold, failures=list(unavailable))
    sources = [cast(SourceStore, s) for s in stores if isinstance(s, Source)]
    targets = [cast(TargetStore, s) for s in stores if isinstance(s, Target)]
    # A plan shows an adoption over the threshold (the sync asks to confirm it).
    confirmed = replace(settings, confirm_adoption=True)
    with hub.rolled_back():
        for entity in ENTITIES:
            for source in sources:
                plan.add(source.name, entity.name)
                try:
                    stats = pipeline.capture(hub, source, entity, run_id, confirmed, keep_change_log=True)
                except Exception as exc:  # noqa: BLE001 - the plan of the other stores goes on
                    plan.failures.append(_failure(source.name, entity.name, "capture", exc))
                    continue
                if stats.adoption is not None and (stats.adoption.links or stats.adoption.unmatched
                                                   or stats.adoption.new):
                    plan.adoptions.append(stats.adoption)
            pipeline.resolve(hub, entity, run_id, confirmed)
            for target in targets:
                plan.add(target.name, entity.name, **publish_forecast(hub, target.name, entity.name))
            for conflict in run_conflicts(hub, run_id, entity.name):
                plan.add(conflict["incoming_store"], entity.name, conflicts=1)
                plan.conflicts.append({"entity": entity.name, **conflict})
            for record in run_quarantined(hub, run_id, entity.name):
                plan.add(record["store"], entity.name, quarantine=1)
                plan.quarantined.append({"entity": entity.name, **record})
            for link in run_links(hub, run_id, entity.name):
                plan.add(link["store"], entity.name, link=1)
                plan.links.append({"entity": entity.name, **link})
    return plan


def _failure(store: str, entity: str, step: str, exc: Exception) -> dict[str, Any]:
    return {"store": store, "entity": entity, "step": step,
            "error": redact_text(f"{type(exc).__name__}: {exc}")[:300]}


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], limit: int = 50) -> str:
    """Rows as an aligned plain-text table for the terminal; at most `limit` rows, then how many more."""
    if not rows:
        return "  (none)"
    cells = [[" ".join(str(r.get(c, "")).split())[:160] for c in columns] for r in rows[:limit]]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more")
    return "\n".join(line.rstrip() for line in lines)


def print_plan(plan: SyncPlan, say: Callable[[str], None]) -> None:
    say("What the next sync would do (nothing was written):")
    say(text_table(plan.summary(), SUMMARY_COLUMNS, limit=len(plan.counts)))
    for title, rows, columns in (("Conflicts and who would win", plan.conflicts, CONFLICT_COLUMNS),
                                 ("Records it would quarantine", plan.quarantined, QUARANTINE_COLUMNS),
                                 ("Records it would link by natural key", plan.links, LINK_COLUMNS),
                                 ("Stores it would adopt", plan.adoption_rows(), ADOPTION_COLUMNS),
                                 ("Stores that could not be planned", plan.failures, FAILURE_COLUMNS)):
        say(f"\n{title}:")
        say(text_table(rows, columns))
    if plan.confirmation_needed:
        say(f"\nThe sync will refuse to run until confirmed: {plan.confirmation_needed}")


def open_stores(hub: Hub, resources: Mapping[str, Any]) -> tuple[list[Any], list[dict[str, Any]]]:
    """The stores the resources configure, in the registry's order, and a failure row for each one that is
    misconfigured or cannot be opened (a store not configured at all is left out, as the sync leaves it)."""
    stores, unavailable = [], []
    for spec in STORES:
        resource = resources[spec.key]
        if not (resource.configured or resource.misconfiguration):
            continue
        try:
            if resource.misconfiguration:
                raise ValueError(f"{spec.label} is misconfigured: {resource.misconfiguration}")
            stores.append(resource.store(hub))
        except Exception as exc:  # noqa: BLE001 - the other stores are planned
            unavailable += [_failure(spec.key, "-", "open", exc)]
    return stores, unavailable
