"""The set-based resolve against a real hub: a whole batch decides exactly what one change at a time decides,
what each store has not seen comes from its pending records, and statistics follow a bulk load."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from sync_pipeline.engine.records import CapturedChange, GoldenRecord, Op, StoreState
from sync_pipeline.hub import resolve as resolve_module
from sync_pipeline.hub.golden import set_states, write_golden
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.entities import entity

PEOPLE = entity("people")
PRIORITY = ("twenty", "supabase", "local_db")
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _person(i: int, **edits: Any) -> dict[str, Any]:
    return {"first_name": f"P{i}", "last_name": "Person", "email": f"p{i}@example.com", "city": "Paris", **edits}


def _change(store: str, rid: str | None, data: dict[str, Any] | None, base: int | None, minutes: int,
            key: str, store_record_id: str | None = None) -> CapturedChange:
    return CapturedChange(rid, store_record_id or rid or "", Op.UPSERT if data is not None else Op.DELETE, data,
                          T0 + timedelta(minutes=minutes), key, base)


def _scenario(ids: list[str], twenty_ids: list[str]) -> list[tuple[str, list[CapturedChange]]]:
    """Captures in order, each from one store: new people; edits in Supabase; edits in the local DB on the
    same base (merged), the same record twice, an echo; Twenty's copies of people, linked by e-mail; a new
    record taking another's e-mail; deletes; an edit made before a delete."""
    first = [_change("local_db", rid, _person(i), 0, 0, f"l:{rid}:0") for i, rid in enumerate(ids)]
    supabase = [_change("supabase", rid, _person(i, city="Lyon"), 1, 10, f"s:{rid}:1")
                for i, rid in enumerate(ids[:12])]
    local = [_change("local_db", rid, _person(i, last_name="Edited"), 1, 20, f"l:{rid}:1")
             for i, rid in enumerate(ids[:6])]
    local += [_change("local_db", ids[7], _person(7, city="Lyon", job_title="Lead"), 2, 21, f"l:{ids[7]}:2"),
              _change("local_db", ids[7], _person(7, city="Lyon", job_title="Chief"), 3, 22, f"l:{ids[7]}:3"),
              _change("local_db", ids[15], _person(15), 1, 23, f"l:{ids[15]}:echo")]
    twenty = [_change("twenty", None, _person(12 + n, phone="+33 1"), None, 30, f"t:{tid}", store_record_id=tid)
              for n, tid in enumerate(twenty_ids)]
    taken = [_change("local_db", str(uuid.uuid4()), _person(0), 0, 31, "l:taken")]
    deletes = [_change("supabase", rid, None, 2, 40, f"s:{rid}:del") for rid in ids[8:10]]
    late = [_change("local_db", ids[8], _person(8, city="Nice"), 1, 39, f"l:{ids[8]}:late")]
    return [("local_db", first), ("supabase", supabase), ("local_db", local), ("twenty", twenty),
            ("local_db", taken), ("supabase", deletes), ("local_db", late)]


def _tables(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a resolve wrote, without ids and times."""
    queries = {
        "golden": "select record_id, version, data, deleted, content_hash, origin_store, origin_modified_at "
                  "from sync.golden order by 1",
        "history": "select record_id, version, data, origin_store from sync.golden_history order by 1, 2",
        "conflicts": "select record_id, golden_version, base_version, incoming_store, golden_store, winner_store, "
                     "resolution, result_version, differing_fields, golden_side, incoming_side "
                     "from sync.conflicts order by 1, 2, 4",
        "states": "select record_id, store, store_record_id, seen_version, seen_hash, written_version "
                  "from sync.record_state order by 1, 2",
        "outcomes": "select store, event_key, record_id, outcome, version, detail from sync.record_outcomes "
                    "where stage = 'resolve' order by 1, 2",
        "quarantine": "select store, record_id, event_key, reason from sync.quarantine order by 1, 3",
        "pending": "select store, record_id, version from sync.publish_pending order by 1, 2",
        "unapplied": "select count(*) from sync.inbox where applied_at is null",
    }
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(q).fetchall() for name, q in queries.items()}


def test_a_whole_batch_decides_what_one_change_at_a_time_decides(topology):
    ids = sorted(str(uuid.uuid4()) for _ in range(16))
    twenty_ids = [str(uuid.uuid4()) for _ in range(3)]
    one_at_a_time = Hub(topology.server.create_database(f"one_{uuid.uuid4().hex[:8]}"))
    hubs = {1: one_at_a_time, 500: topology.hub}
    scenario = _scenario(ids, twenty_ids)
    for batch_size, hub in hubs.items():
        hub.migrate()
        hub.unseen_by("supabase", "people", 1)  # a publish target from the start
        # A replay: the ledger already has the event that comes again under its key.
        with hub.connect() as conn:
            conn.execute("insert into sync.processed_events (store, event_key) values ('supabase', %s)",
                         (f"s:{ids[11]}:1",))
        for n, (store, changes) in enumerate(scenario):
            hub.enqueue(store, "people", changes, [], None, f"capture-{n}")
            stats = hub.resolve_pending(PEOPLE, f"resolve-{n}", PRIORITY, batch_size)
            assert stats.read == len(changes)
    batched, single = _tables(topology.local_dsn), _tables(one_at_a_time._dsn)
    for table in batched:
        assert batched[table] == single[table], table
    # And the scenario did what it says.
    assert {r[6] for r in batched["conflicts"]} >= {"merged"}
    assert len(batched["quarantine"]) == 1 and "already belongs to record" in batched["quarantine"][0][3]
    assert {r[3] for r in batched["outcomes"]} >= {"applied", "conflict", "duplicate", "echo"}
    linked = [r for r in batched["states"] if r[1] == "twenty"]
    assert sorted(r[2] for r in linked) == sorted(twenty_ids)  # linked to the people by e-mail
    assert batched["unapplied"] == [(0,)]


def test_batches_read_while_the_one_before_is_written_decide_what_one_batch_decides(topology):
    """Each change depends on the one before it in the inbox: a new person, Twenty's copy of them linked by
    e-mail, an edit by id on the version Twenty's link made. Batches of one are each read and decided while
    the one before is written, so each must wait for that one's commit; one batch of all decides in memory."""
    ids = [str(uuid.uuid4()) for _ in range(40)]
    changes = []
    for i, rid in enumerate(ids):
        twenty_id = str(uuid.uuid4())
        changes += [_change("local_db", rid, _person(i), 0, i, f"l:{rid}:0"),
                    _change("twenty", None, _person(i, phone="+33 1"), None, i, f"t:{twenty_id}",
                            store_record_id=twenty_id),
                    _change("supabase", rid, _person(i, city="Lyon"), 2, i, f"s:{rid}:2")]
    tables = {}
    for batch_size in (1, 500):
        hub = Hub(topology.server.create_database(f"pipelined_{batch_size}_{uuid.uuid4().hex[:8]}"))
        hub.migrate()
        hub.unseen_by("supabase", "people", 1)  # a publish target from the start
        for store, change in zip(("local_db", "twenty", "supabase") * 40, changes):  # in this inbox order
            hub.enqueue(store, "people", [change], [], None, "capture")
        stats = hub.resolve_pending(PEOPLE, "resolve", PRIORITY, batch_size)
        assert (stats.read, stats.applied + stats.conflicts, stats.quarantined) == (120, 120, 0), stats
        tables[batch_size] = _tables(hub._dsn)
    assert tables[1] == tables[500]
    golden = tables[1]["golden"]
    assert len(golden) == 40 and {r[1] for r in golden} == {3}  # one record each, created, linked, edited
    assert all(r[2]["city"] == "Lyon" and r[2]["phone"] == "+33 1" for r in golden)


def test_what_a_store_has_not_seen_is_read_from_its_pending_records(topology):
    hub = topology.hub
    assert hub.unseen_by("supabase", "people", 10) == []  # registers Supabase as a target
    ids = sorted(str(uuid.uuid4()) for _ in range(3000))
    hub.enqueue("local_db", "people", [_change("local_db", rid, _person(i), 0, 0, f"l:{rid}")
                                       for i, rid in enumerate(ids)], [], None, "run")
    hub.resolve_pending(PEOPLE, "run", PRIORITY, 1000)
    assert hub.unseen_count("supabase", "people") == 3000
    assert hub.unseen_count("local_db", "people") == 0  # registered now; it holds what it sent

    first = hub.unseen_by("supabase", "people", 1000)
    assert [g.record_id for g in first] == ids[:1000]
    hub.mark_seen("supabase", first)
    hub.mark_seen("supabase", hub.unseen_by("supabase", "people", 1000, after=first[-1].record_id))
    assert hub.unseen_count("supabase", "people") == 1000

    # A later version makes a seen record pending again; the store that sent it does not need it.
    hub.enqueue("local_db", "people", [_change("local_db", ids[0], _person(0, city="Rome"), 1, 5, "l:again")],
                [], None, "run")
    hub.resolve_pending(PEOPLE, "run", PRIORITY, 500)
    assert hub.unseen_count("supabase", "people") == 1001
    assert hub.unseen_count("local_db", "people") == 0
    assert hub.golden_counts("people") == {"live": 3000, "deleted": 0}

    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("analyze sync.golden, sync.publish_pending, sync.record_state")
    scans_before = _golden_seq_scans(topology.local_dsn)
    page = hub.unseen_by("supabase", "people", 10)
    assert [g.record_id for g in page] == [ids[0], *ids[2000:2009]]
    assert page[0].version == 2
    assert _golden_seq_scans(topology.local_dsn) == scans_before  # an index range, not a scan of the hub


def _golden_seq_scans(dsn: str) -> int:
    time.sleep(1.2)  # the hub's backends report their counters when they end
    with psycopg.connect(dsn) as conn:
        conn.execute("select pg_stat_clear_snapshot()")
        row = conn.execute("select seq_scan from pg_stat_user_tables where schemaname = 'sync' "
                           "and relname = 'golden'").fetchone()
        assert row is not None
        return int(row[0])


def test_a_bulk_resolve_analyzes_the_tables_it_grew_and_a_small_one_does_not(topology, monkeypatch):
    monkeypatch.setattr(resolve_module, "ANALYZE_AFTER_ROWS", 100)
    hub = topology.hub
    hub.enqueue("local_db", "people", [_change("local_db", str(uuid.uuid4()), _person(i), 0, 0, f"l:{i}")
                                       for i in range(400)], [], None, "run")
    hub.resolve_pending(PEOPLE, "run", PRIORITY, 100)
    analyzed = _manual_analyzes(topology.local_dsn)
    assert analyzed["golden"] >= 1 and analyzed["golden_history"] >= 1 and analyzed["record_state"] >= 1

    hub.enqueue("local_db", "people", [_change("local_db", str(uuid.uuid4()), _person(1000), 0, 0, "l:one")],
                [], None, "run")
    hub.resolve_pending(PEOPLE, "run", PRIORITY, 100)
    assert _manual_analyzes(topology.local_dsn) == analyzed  # one more record is no bulk load


def _manual_analyzes(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        conn.execute("select pg_stat_clear_snapshot()")
        rows = conn.execute("select relname, analyze_count from pg_stat_user_tables where schemaname = 'sync'")
        return {r[0]: r[1] for r in rows}


def test_records_new_to_the_batch_but_inserted_meanwhile_are_upserted(topology):
    """The resolve puts what the hub did not hold when it read the batch in by COPY; a record (or a store's
    state) inserted since fails that COPY's savepoint, and the upsert writes every row of the batch."""
    hub = topology.hub
    rid, other = str(uuid.uuid4()), str(uuid.uuid4())
    meanwhile = GoldenRecord("people", rid, 1, _person(1), False, "h1", "supabase", T0)
    with hub.connect() as conn:
        write_golden(conn, [meanwhile], "other-resolve", new={rid})
        set_states(conn, "people", {(rid, "supabase"): StoreState(1, "h1", 0)}, new={(rid, "supabase")})
    edited = GoldenRecord("people", rid, 2, _person(1, city="Rome"), False, "h2", "local_db", T0)
    fresh = GoldenRecord("people", other, 1, _person(2), False, "h3", "local_db", T0)
    with hub.connect() as conn:
        write_golden(conn, [edited, fresh], "resolve", new={rid, other})
        set_states(conn, "people", {(rid, "local_db"): StoreState(2, "h2", 0),
                                    (rid, "supabase"): StoreState(2, "h2", 0),
                                    (other, "local_db"): StoreState(1, "h3", 0)},
                   new={(rid, "supabase"), (other, "local_db")})
        golden = conn.execute("select record_id::text as id, version, data->>'city' as city from sync.golden "
                              "order by version").fetchall()
        states = conn.execute("select record_id::text as id, store, seen_version from sync.record_state "
                              "order by store, record_id").fetchall()
        history = conn.execute("select count(*) as n from sync.golden_history").fetchone()
    assert [(g["id"], g["version"], g["city"]) for g in golden] == sorted(
        [(rid, 2, "Rome"), (other, 1, "Paris")], key=lambda g: g[1])
    assert sorted((s["id"], s["store"], s["seen_version"]) for s in states) == sorted(
        [(rid, "local_db", 2), (other, "local_db", 1), (rid, "supabase", 2)])
    assert history["n"] == 3
