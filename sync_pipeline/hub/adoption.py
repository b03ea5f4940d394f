"""The hub's side of adopting a store that already holds records: the golden records its natural key values
name, the links it makes (in the record state, the id map that later changes flow through both ways), and
whether an adoption was refused and waits for the operator's confirmation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

from sync_pipeline.engine.adoption import AdoptionRefused, AdoptionReport, HubRecord, Winner
from sync_pipeline.hub.connection import HubConnection, as_uuid
from sync_pipeline.hub.runs import RecordOutcome, record_outcomes

# The class of the error a refused adoption records (by the step that ran it): while it is open, the store is
# not written to, or its records would be duplicated there.
REFUSED_ERROR_CLASS = AdoptionRefused.__name__


def unknown_store_ids(hub: HubConnection, store: str, entity: str, store_ids: Sequence[str]) -> list[str]:
    """Those of a page of a store's ids (as its listing gives them: canonical where the hub knows them) the
    hub knows nothing of: never captured from the store (not even waiting in the inbox or held in the
    quarantine, where a record its change log gave stays until fixed at its source) and never written to
    it. Each id is looked up on the indexes, so that a page costs the same however many records the hub
    holds: `offset 0` keeps each `exists` a lookup per id, which the planner would otherwise hash from a
    scan of all the store's rows (as it does before a bulk load's rows are analyzed: once per page).
    """
    with hub.connect() as conn:
        rows = conn.execute(
            """select i.id from unnest(%(ids)s::text[], %(uuids)s::uuid[]) with ordinality as i(id, uuid, n)
               where not (exists (select from sync.record_state s
                                  where s.store = %(store)s and s.entity = %(entity)s
                                    and s.store_record_id = i.id offset 0)
                          or exists (select from sync.record_state s
                                     where s.entity = %(entity)s and s.store = %(store)s
                                       and s.record_id = i.uuid offset 0)
                          or exists (select from sync.inbox x
                                     where x.store = %(store)s and x.entity = %(entity)s and x.kind = 'change'
                                       and x.store_record_id = i.id offset 0)
                          or exists (select from sync.quarantine q
                                     where q.store = %(store)s and q.entity = %(entity)s
                                       and q.resolved_at is null and q.record_id = i.id offset 0))
               order by i.n""",
            {"store": store, "entity": entity, "ids": list(store_ids),
             "uuids": [i if _canonical_uuid(i) else None for i in store_ids]}).fetchall()
    return [r["id"] for r in rows]


def _canonical_uuid(text: str) -> bool:
    """Whether the text is a uuid as the hub writes one (a record id held as text elsewhere compares so)."""
    parsed = as_uuid(text)
    return parsed is not None and str(parsed) == text


def golden_by_natural_key(hub: HubConnection, store: str, entity: str, natural_key: str,
                          values: Collection[str]) -> dict[str, list[HubRecord]]:
    """Natural key value -> the live golden records carrying it, each with the id the store holds it under
    (if any)."""
    if not values:
        return {}
    with hub.connect() as conn:
        rows = conn.execute(
            """select g.data->>%s as key, g.record_id, g.version, g.content_hash, g.data,
                      g.origin_modified_at, s.store_record_id
               from sync.golden g
               left join sync.record_state s
                 on s.entity = g.entity and s.record_id = g.record_id and s.store = %s
               where g.entity = %s and not g.deleted and g.data->>%s = any(%b::text[])""",
            (natural_key, store, entity, natural_key, list(values))).fetchall()
    found: dict[str, list[HubRecord]] = defaultdict(list)
    for r in rows:
        found[r["key"]].append(HubRecord(str(r["record_id"]), r["version"], r["content_hash"], r["data"],
                                         r["origin_modified_at"], r["store_record_id"]))
    return dict(found)


def record_links(hub: HubConnection, report: AdoptionReport, run_id: str | None) -> None:
    """Write the links into the record state, with nothing seen: publishing then writes the golden version
    to every linked record once (the hub's values where they win, the same values otherwise), so that each
    carries the version its later edits are based on. And write the whole report into the sync log: one
    outcome per link and per unmatched record."""
    with hub.connect() as conn, conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                """insert into sync.record_state (entity, record_id, store, store_record_id)
                   values (%s, %s, %s, %s)
                   on conflict (entity, record_id, store) do update set
                     store_record_id = excluded.store_record_id, seen_version = 0, seen_hash = null,
                     updated_at = now()""",
                [(report.entity, link.record_id, report.store, link.store_record_id)
                 for link in report.links])
        record_outcomes(conn, [
            *(RecordOutcome(run_id, report.store, report.entity, link.record_id, "capture", "linked",
                            version=link.version,
                            detail=f"{report.store} record {link.store_record_id} linked by {link.key!r}; "
                                   f"{_values(link.winner, link.differing_fields)}")
              for link in report.links),
            *(RecordOutcome(run_id, report.store, report.entity, u.store_record_id, "capture", "unmatched",
                            detail=u.reason[:500]) for u in report.unmatched)])


def _values(winner: Winner, differing: tuple[str, ...]) -> str:
    if winner is Winner.SAME:
        return "same values"
    side = "this store's" if winner is Winner.STORE else "the other stores'"
    return f"{side} values win ({', '.join(differing)})"


def adoption_refused(hub: HubConnection, store: str, entity: str) -> bool:
    """Whether the store's adoption of the entity was refused and is still waiting for confirmation."""
    with hub.connect() as conn:
        row = conn.execute(
            """select exists (select from sync.errors where store = %s and entity = %s and error_class = %s
                                and resolved_at is null) as refused""",
            (store, entity, REFUSED_ERROR_CLASS)).fetchone()
        return bool(row and row["refused"])
