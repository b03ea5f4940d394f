"""A check's window: the latest runs less those it has passed over once they finished. A sync's checks read
what changed since they last passed (a bulk first sync once, not in the next ten syncs); a run that failed a
check stays in its window until the check passes."""

from __future__ import annotations

import dagster as dg
import psycopg

from sync_pipeline_tests.helpers import insert_person

GATE_CONTRACT = "safety/preflight:people_contract"
UNIQUE_KEYS = "hub/people:unique_keys"


def test_a_check_reads_a_run_until_it_passed_over_it(topology):
    hub = topology.hub
    for i in range(4):
        hub.start_run(f"window-{i}", "test")
    assert hub.window_run_ids("a-check", 3) == ["window-3", "window-2", "window-1"]
    hub.pass_over("a-check", ["window-2", "window-0"], 3)
    assert hub.window_run_ids("a-check", 3) == ["window-3", "window-1"]
    assert hub.window_run_ids("another-check", 3) == ["window-3", "window-2", "window-1"]
    with hub.connect() as conn:  # window-0 has left the latest three runs: forgotten
        kept = conn.execute("select run_id from sync.check_clearances where check_key = 'a-check'").fetchall()
    assert [r["run_id"] for r in kept] == ["window-2"]


def _gated_run(stores, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return stores.defs.resolve_job_def("sync_with_safety_check").execute_in_process(instance=instance,
                                                                                   raise_on_error=False)


def _passed_over(topology, check: str) -> set[str]:
    with topology.hub.connect() as conn:
        return {r["run_id"] for r in conn.execute(
            "select run_id from sync.check_clearances where check_key = %s", (check,)).fetchall()}


def _evaluation(result: dg.ExecuteInProcessResult, check: str) -> dg.AssetCheckEvaluation:
    [found] = [e for e in result.get_asset_check_evaluations()
               if f"{e.asset_key.to_user_string()}:{e.check_name}" == check]
    return found


def test_each_sync_reads_what_changed_since_its_checks_passed_and_a_failure_stays(four_stores, topology):
    instance = dg.DagsterInstance.ephemeral()  # one instance: it knows which runs have finished
    with psycopg.connect(topology.supabase_dsn) as conn:
        for n in range(3):
            insert_person(conn, first_name=f"First{n}")
    first = _gated_run(four_stores, instance)
    assert first.success
    # The checks after the writes passed over their own run; the gate, evaluated before them, did not.
    assert first.run_id in _passed_over(topology, UNIQUE_KEYS)
    assert first.run_id not in _passed_over(topology, GATE_CONTRACT)

    with psycopg.connect(topology.local_dsn) as conn:
        later = insert_person(conn, first_name="Later")
    second = _gated_run(four_stores, instance)
    assert second.success
    assert {first.run_id, second.run_id} <= _passed_over(topology, UNIQUE_KEYS)
    assert first.run_id in _passed_over(topology, GATE_CONTRACT)  # read once by the next gate, once finished
    # What the next sync's checks will read: nothing for those that follow the writes, the second sync for the
    # gate (it had not finished when its own gate ran); the first sync for neither.
    assert topology.hub.window_run_ids(UNIQUE_KEYS, 10) == []
    assert topology.hub.window_run_ids(GATE_CONTRACT, 10) == [second.run_id]

    with topology.hub.connect() as conn:  # the second sync's record breaks its contract in the hub
        conn.execute("""update sync.golden set data = jsonb_set(data, '{email}', '"not-an-email"')
                        where record_id = %s""", (later,))
    for _ in range(2):  # the failing run stays in the gate's window, sync after sync
        blocked = _gated_run(four_stores, instance)
        assert not blocked.success and not _evaluation(blocked, GATE_CONTRACT).passed
        assert second.run_id not in _passed_over(topology, GATE_CONTRACT)
    with topology.hub.connect() as conn:
        conn.execute("""update sync.golden set data = jsonb_set(data, '{email}', '"later@example.com"')
                        where record_id = %s""", (later,))
    fixed = _gated_run(four_stores, instance)
    assert fixed.success and _evaluation(fixed, GATE_CONTRACT).passed
    assert second.run_id in _passed_over(topology, GATE_CONTRACT)
