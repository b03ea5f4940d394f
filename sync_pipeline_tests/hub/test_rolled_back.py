"""`Hub.rolled_back()`: hub work that leaves no trace, for a plan of what a sync would do."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import psycopg
import pytest

from sync_pipeline.engine.records import CapturedChange, Op
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.entities import entity

PEOPLE = entity("people")


def _change(name: str) -> CapturedChange:
    rid = str(uuid.uuid4())
    return CapturedChange(rid, rid, Op.UPSERT, {"first_name": name, "email": f"{name.lower()}@example.com"},
                          datetime.now(timezone.utc), f"cdc:{rid}", 0)


def _counts(dsn: str) -> dict[str, int]:
    """Row counts read on a connection of its own, outside any rolled-back block."""
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f"select count(*) from sync.{t}").fetchone()[0]  # type: ignore[index]
                for t in ("runs", "inbox", "golden", "golden_history", "record_state", "processed_events",
                          "cursors", "record_outcomes")}


def test_a_sync_inside_rolled_back_is_seen_inside_and_leaves_no_trace(topology):
    dsn = topology.local_dsn
    before = _counts(dsn)
    with topology.hub.rolled_back():
        topology.hub.start_run("plan", "test")
        assert topology.hub.enqueue("local_db", "people", [_change("Ada"), _change("Bo")], [],
                                    {"txid": "7", "seq": 1}, "plan") == 2
        # Another hub on the same database (as each Dagster step builds its own) shares the transaction.
        other = Hub(dsn)
        stats = other.resolve_pending(PEOPLE, "plan", ("local_db",), 500)
        assert stats.applied == 2
        assert len(other.golden_snapshot("people")) == 2
        assert other.get_cursor("local_db", "people") == {"txid": "7", "seq": 1}
        assert _counts(dsn) == before  # nothing is visible outside while it runs
    assert _counts(dsn) == before  # nor after
    assert topology.hub.golden_snapshot("people") == {}


def test_an_error_inside_rolled_back_undoes_its_own_unit_only(topology):
    with topology.hub.rolled_back():
        topology.hub.start_run("plan", "test")
        with pytest.raises(psycopg.errors.UndefinedTable):
            with topology.hub.connect() as conn:
                conn.execute("insert into sync.runs (run_id) values ('lost')")
                conn.execute("select from sync.no_such_table")
        with topology.hub.connect() as conn:
            runs = [r["run_id"] for r in conn.execute("select run_id from sync.runs order by run_id")]
        assert runs == ["plan"]
    assert _counts(topology.local_dsn)["runs"] == 0


def test_outside_rolled_back_work_commits_as_before(topology):
    with topology.hub.rolled_back():
        pass
    topology.hub.start_run("real", "test")
    assert _counts(topology.local_dsn)["runs"] == 1
