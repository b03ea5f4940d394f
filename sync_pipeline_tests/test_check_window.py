"""A check's window: the latest runs less those it has passed over once they finished. A sync's checks read
what changed since they last passed (a bulk first sync once, in its own run, not in the next ten syncs); a run
that failed a check stays in its window until the check passes."""

from __future__ import annotations

import dagster as dg
import psycopg

from sync_pipeline.model.entities import entity
from sync_pipeline.safety import checks as safety
from sync_pipeline.safety.checks import Scope, Status
from sync_pipeline_tests.fixtures.defs import run_job
from sync_pipeline_tests.helpers import insert_person

PEOPLE = entity("people")

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


def test_a_sync_settles_its_own_runs_checks_and_the_next_reads_what_changed_since(four_stores, topology):
    instance = dg.DagsterInstance.ephemeral()  # one instance: it knows which runs have finished
    with psycopg.connect(topology.supabase_dsn) as conn:
        for n in range(3):
            insert_person(conn, first_name=f"First{n}")
    first = _gated_run(four_stores, instance)
    assert first.success
    # The checks after the writes passed over their own run, and settled it for the gate's checks too: the
    # next gate reads none of it again.
    assert first.run_id in _passed_over(topology, UNIQUE_KEYS) & _passed_over(topology, GATE_CONTRACT)
    assert topology.hub.window_run_ids(GATE_CONTRACT, 10) == []

    with psycopg.connect(topology.local_dsn) as conn:
        insert_person(conn, first_name="Later")
    second = _gated_run(four_stores, instance)
    assert second.success and _evaluation(second, GATE_CONTRACT).passed
    assert {first.run_id, second.run_id} <= _passed_over(topology, UNIQUE_KEYS) & _passed_over(topology,
                                                                                                GATE_CONTRACT)
    assert topology.hub.window_run_ids(UNIQUE_KEYS, 10) == []


def test_a_run_that_fails_a_check_stays_in_its_window_until_the_check_passes(four_stores, topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn, first_name="Grace", email="grace@navy.mil")
    assert run_job(four_stores.defs).success
    hub, check = topology.hub, "a-contract-check"
    [run_id] = hub.window_run_ids(check, 10)

    def evaluate() -> safety.Verdict:
        scope = Scope(hub, 10, check)
        verdict = safety.pending_golden_contract(hub, PEOPLE, scope.run_ids, [])
        scope.pass_over(verdict, set)  # no run has finished...
        scope.pass_over(verdict, lambda run_ids: set(run_ids))  # ...then every one has
        return verdict

    with hub.connect() as conn:  # a record of that run breaks its contract in the hub
        conn.execute("""update sync.golden set data = jsonb_set(data, '{email}', '"not-an-email"')
                        where entity = 'people' and data->>'first_name' = 'Grace'""")
    for _ in range(2):
        assert evaluate().status is Status.FAIL
        assert hub.window_run_ids(check, 10) == [run_id]
    with hub.connect() as conn:
        conn.execute("""update sync.golden set data = jsonb_set(data, '{email}', '"grace@navy.mil"')
                        where entity = 'people' and data->>'first_name' = 'Grace'""")
    assert evaluate().status is Status.PASS
    assert hub.window_run_ids(check, 10) == []
