"""The safety checks as Dagster asset checks, each beside the asset it checks.

The gate is `safety/preflight`, upstream of every capture: its checks run first in `sync_with_safety_check`.
Only the hub's own integrity blocks everything (contract, applied once, conflicts recorded): with it broken,
nothing may spread. What one store or one record breaks holds back that store or that record only: a store
that is down or whose change capture is gone fails its own steps (recorded; the others sync), and a
duplicate natural key is held back by the resolve, which quarantines it with its reason; `unique_keys` on the
hub asset, evaluated after the resolve, names it. Their checks FAIL and the verdict names the store and the
records, but they do not stop the other stores. Monitoring checks sit on the store and hub assets they
describe. The safety command runs all of them through Dagster.

A check is evaluated in one Dagster step with the others of its group (the gate, the hub, one per store):
about 74 checks in six steps, where a step each made the sync slow. Each keeps its own name, asset, blocking
flag and result; one that cannot run fails alone. A group can be subset, so a run of some assets (a sensor's
targeted run, the UI's "Execute" of one check) evaluates only their checks.

Every sync evaluates its checks over a window (the latest runs less those the check has passed over, and what
is pending; `safety.checks.Scope`, `hub.check_windows`); a run tagged `sync/checks: sweep` (the nightly one
after the reconciliation) looks at everything.

No `from __future__ import annotations` here: Dagster inspects the context annotation at definition time.
"""

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import dagster as dg

from sync_pipeline.config import active_config
from sync_pipeline.defs.assets import PREFLIGHT_KEY, capture_key, hub_key, publish_key
from sync_pipeline.model.entities import ENTITIES, Entity
from sync_pipeline.redaction import redact_text
from sync_pipeline.safety import checks as safety
from sync_pipeline.safety import schema_checks
from sync_pipeline.safety.checks import Scope, Status, Verdict
from sync_pipeline.stores.base import StoreSpec
from sync_pipeline.stores.postgres.store import DATA_API_STORES, PostgresStore
from sync_pipeline.stores.registry import STORES, sources

SCOPE_TAG, SWEEP = "sync/checks", "sweep"  # a run tagged so evaluates every check over everything


@dg.asset(
    key=PREFLIGHT_KEY,
    group_name="safety",
    kinds={"python"},
    description="The gate of a safe sync, evaluated before anything is written. The hub's integrity (contract, "
                "idempotency, conflict invariants) blocks everything; a store that is down or lost its change "
                "capture fails its check and holds back that store only.",
)
def preflight() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"gate": "the blocking checks decide"})


@dataclass(frozen=True)
class SafetyCheck:
    """One check: its spec (asset, name, description, blocking flag), the resources it reads, and how it is
    evaluated from the resources and the scope."""

    spec: dg.AssetCheckSpec
    resources: frozenset[str]
    evaluate: Callable[[Any, Scope], Verdict]


def to_result(spec: dg.AssetCheckSpec, verdict: Verdict) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {"status": verdict.status.value, "reason": verdict.reason}
    for key, value in verdict.metadata.items():
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, (list, dict)) else value
    # A warning passes in Dagster's terms (its UI labels any failed check "Failed"); the `status` metadata, the
    # description and the verdict say WARN.
    warned = verdict.status is Status.WARN
    return dg.AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name,
                               passed=verdict.status is not Status.FAIL, severity=dg.AssetCheckSeverity.ERROR,
                               description=f"WARN: {verdict.reason}" if warned else verdict.reason,
                               metadata=metadata)


def _check(asset: dg.AssetKey, name: str, description: str, resources: set[str],
           evaluate: Callable[[Any, Scope], Verdict], blocking: bool = False) -> SafetyCheck:
    return SafetyCheck(dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking),
                       frozenset(resources), evaluate)


def _evaluate(evaluate: Callable[[], Verdict]) -> Verdict:
    try:
        return evaluate()
    except Exception as exc:  # noqa: BLE001 - a check that cannot run is a failed check, never a silent one
        return Verdict.fail(f"the check could not run: {type(exc).__name__}: {redact_text(str(exc))[:300]}")


def _record_passed_over(context: dg.AssetCheckExecutionContext, key: dg.AssetCheckKey,
                        record: Callable[[], None]) -> None:
    try:
        record()
    except Exception as exc:  # noqa: BLE001 - the verdict stands; the run is read again next time
        context.log.warning(f"{key.to_user_string()}: could not record the runs it passed over: "
                            f"{type(exc).__name__}: {redact_text(str(exc))[:300]}")


def _finished_runs(context: dg.AssetCheckExecutionContext, run_ids: list[str], follows_writes: bool) -> set[str]:
    """Those of the runs that had finished: by this instance's run records, and the run evaluating, when its
    checks follow what they check (after its writes, nothing of it is left to change)."""
    records = context.instance.get_run_records(dg.RunsFilter(run_ids=run_ids)) if run_ids else []
    finished = {r.dagster_run.run_id for r in records if r.dagster_run.is_finished}
    return finished | ({context.run.run_id} if follows_writes else set())


# A gate check's key, and how it reads some runs' own records (without what is pending for the stores).
RunCheck = tuple[dg.AssetCheckKey, Callable[[Any, list[str]], Verdict]]


def check_group(name: str, description: str, checks: list[SafetyCheck], follows_writes: bool = True,
                settles: list[RunCheck] | None = None) -> dg.AssetChecksDefinition:
    """The checks evaluated in one step, each on its own (one that cannot run fails alone), in order. A check
    that passed passes over the finished runs of its window (`follows_writes`: the evaluating run's too).

    `settles`: gate checks this step evaluates over its own run once the run's writes are done; where one
    finds nothing wrong, the next gate need not read the run again (a bulk first sync is read in its own run,
    not in the next one). What one finds stays for the next gate to read, fail on, and block."""
    by_key = {check.spec.key: check for check in checks}

    @dg.multi_asset_check(name=name, description=description, specs=[c.spec for c in checks], can_subset=True,
                          required_resource_keys={"hub", "sync_settings", *(r for c in checks for r in c.resources)})
    def _run(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        resources = context.resources
        hub, recent_runs = resources.hub.hub(), resources.sync_settings.thresholds().recent_runs
        sweep = context.run.tags.get(SCOPE_TAG) == SWEEP
        selected = context.selected_asset_check_keys
        for key, check in by_key.items():
            if key in selected:
                scope = Scope(hub, recent_runs, key.to_user_string(), sweep=sweep)
                verdict = _evaluate(lambda: check.evaluate(resources, scope))
                _record_passed_over(context, key, lambda: scope.pass_over(
                    verdict, lambda run_ids: _finished_runs(context, run_ids, follows_writes)))
                yield to_result(check.spec, verdict)
        if not sweep:
            own_run = [context.run.run_id]
            for key, read_runs in settles or []:
                verdict = _evaluate(lambda: read_runs(resources, own_run))
                if verdict.status is Status.FAIL:
                    context.log.warning(f"{key.to_user_string()} reads this run again at the next gate: "
                                        f"{verdict.reason}")
                else:
                    _record_passed_over(context, key, lambda: hub.pass_over(key.to_user_string(), own_run,
                                                                            recent_runs))

    return _run


def _store_check(spec: StoreSpec, evaluate: Callable[[Any, Any, Scope], Verdict]) -> Callable[[Any, Scope], Verdict]:
    """Evaluate against the store when it is configured; an optional store that is not is a WARN, one that is
    set up by halves is a FAIL."""
    def run(resources: Any, scope: Scope) -> Verdict:
        resource = getattr(resources, spec.key)
        if resource.misconfiguration:
            return Verdict.fail(f"{spec.label} is misconfigured: {resource.misconfiguration}")
        if not resource.configured:
            return safety.not_configured(spec.label)
        return evaluate(resources, resource.store(resources.hub.hub()), scope)

    return run


def _configured(resources: Any, specs: list[StoreSpec]) -> list[StoreSpec]:
    return [s for s in specs if getattr(resources, s.key).configured]


# -- the gate ---------------------------------------------------------------------------------------------


def _connection_check(spec: StoreSpec) -> SafetyCheck:
    return _check(PREFLIGHT_KEY, f"{spec.key}_connection",
                  f"{spec.label} is reachable, accepts our credentials and allows what the sync needs.",
                  {spec.key}, _store_check(spec, lambda r, store, scope: safety.connection(store)))


def _capture_installed_check(spec: StoreSpec, entity: Entity) -> SafetyCheck:
    return _check(PREFLIGHT_KEY, f"{spec.key}_{entity.name}_capture_installed",
                  f"The change log and triggers of {entity.name} in {spec.label} are in place: without them "
                  f"edits there would be missed.", {spec.key},
                  _store_check(spec, lambda r, store, scope: safety.capture_installed(store, entity, r.hub.hub())))


def _golden_contract(resources: Any, scope: Scope, entity: Entity) -> Verdict:
    hub = resources.hub.hub()
    if scope.sweep:
        return safety.golden_contract(hub, entity)
    targets = [s.key for s in _configured(resources, [s for s in STORES if s.publishes])]
    return safety.pending_golden_contract(hub, entity, scope.run_ids, targets)


def _window(scope: Scope) -> list[str] | None:
    """The runs a window check looks at; None (everything) in a sweep."""
    return None if scope.sweep else scope.run_ids


def _golden_contract_key(entity: Entity) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(PREFLIGHT_KEY, f"{entity.name}_contract")


def _gate_run_checks(entity: Entity) -> list[RunCheck]:
    """The gate's hub-integrity checks as read over some runs' own records: settled by the hub's checks
    at the end of each run (`check_group`)."""
    return [
        (_golden_contract_key(entity),
         lambda r, run_ids: safety.pending_golden_contract(r.hub.hub(), entity, run_ids, [])),
        (dg.AssetCheckKey(PREFLIGHT_KEY, f"{entity.name}_applied_once"),
         lambda r, run_ids: safety.applied_once(r.hub.hub(), entity, run_ids)),
        (dg.AssetCheckKey(PREFLIGHT_KEY, f"{entity.name}_conflicts_recorded"),
         lambda r, run_ids: safety.conflicts_recorded(r.hub.hub(), entity, run_ids)),
    ]


def _hub_preflight_checks(entity: Entity) -> list[SafetyCheck]:
    stores = {s.key for s in STORES if s.publishes}
    return [
        _check(PREFLIGHT_KEY, _golden_contract_key(entity).name,
               f"The golden {entity.name} records still to be published, and those of runs no check has read yet "
               f"(each run's own are read at its end), meet the pandera contract (required fields, types, "
               f"formats): nothing invalid can spread from the hub. The nightly sweep validates every one.", stores,
               lambda r, scope: _golden_contract(r, scope, entity), blocking=True),
        _check(PREFLIGHT_KEY, f"{entity.name}_applied_once",
               f"No captured {entity.name} change of the runs since this check last passed was applied twice "
               f"(ledger vs per-record outcomes, and the golden history); the nightly sweep reads all of them.", set(),
               lambda r, scope: safety.applied_once(r.hub.hub(), entity, _window(scope)), blocking=True),
        _check(PREFLIGHT_KEY, f"{entity.name}_conflicts_recorded",
               f"Every {entity.name} conflict of the runs since this check last passed has a recorded winner the "
               f"hub holds or superseded; the nightly sweep reads all of them.", set(),
               lambda r, scope: safety.conflicts_recorded(r.hub.hub(), entity, _window(scope)), blocking=True),
    ]


def _postgres_schema_checks(spec: StoreSpec, entity: Entity) -> list[SafetyCheck]:
    """The mapped table's drift (a blocking problem holds back that store: its capture and publish refuse
    to run) and, where Supabase's Data API reaches the store, its row-level security."""
    checks = [_check(PREFLIGHT_KEY, f"{spec.key}_{entity.name}_schema",
                     f"The configured columns of {entity.name} in {spec.label} exist with types the sync writes "
                     f"(FAIL, the store is held back); a column neither mapped nor ignored is a WARN.", {spec.key},
                     _store_check(spec, lambda r, store, scope: schema_checks.schema_drift(store, entity)))]
    if spec.key in DATA_API_STORES:
        checks.append(_check(
            PREFLIGHT_KEY, f"{spec.key}_{entity.name}_row_level_security",
            f"The {entity.name} table in {spec.label}, if in a schema the Data API exposes, has row-level security "
            f"on: else anyone holding the project's anon key reads and writes it.", {spec.key},
            _store_check(spec, lambda r, store, scope: schema_checks.row_level_security(
                store, entity, getattr(r, spec.key).data_api_schemas))))
    return checks


def gate_checks() -> list[SafetyCheck]:
    checks = [_connection_check(spec) for spec in STORES]
    checks += [_capture_installed_check(spec, entity)
               for spec in STORES if spec.has_change_log for entity in ENTITIES
               if active_config().carries(spec.key, entity.name)]
    checks += [check for spec in STORES if issubclass(spec.store_class, PostgresStore) for entity in ENTITIES
               if active_config().carries(spec.key, entity.name) for check in _postgres_schema_checks(spec, entity)]
    for entity in ENTITIES:
        checks += _hub_preflight_checks(entity)
    return checks


# -- monitoring -------------------------------------------------------------------------------------------


def _sweep_or_window(sweep: Callable[[Any, Any], Verdict],
                     window: Callable[[Any, list[str]], Verdict]) -> Callable[[Any, Any, Scope], Verdict]:
    """A store check that reads the whole store in the nightly sweep, else only the latest runs' window:
    `sweep(store, hub)`, `window(hub, run_ids)`."""
    def run(resources: Any, store: Any, scope: Scope) -> Verdict:
        hub = resources.hub.hub()
        return sweep(store, hub) if scope.sweep else window(hub, scope.run_ids)

    return run


def _store_contract(spec: StoreSpec, entity: Entity) -> Callable[[Any, Any, Scope], Verdict]:
    golden_contract = _golden_contract_key(entity).to_user_string()
    return _sweep_or_window(lambda store, hub: safety.store_contract(store, entity, hub),
                            lambda hub, run_ids: safety.held_back(hub, spec.key, entity, run_ids, golden_contract))


def _consistency(spec: StoreSpec, entity: Entity) -> Callable[[Any, Any, Scope], Verdict]:
    return _sweep_or_window(lambda store, hub: safety.consistency(store, entity, hub),
                            lambda hub, run_ids: safety.delivered(hub, spec.key, entity, run_ids))


def _carried(spec: StoreSpec) -> list[Entity]:
    """The entities the configuration gives the store; a store's checks are built for these only."""
    return [entity for entity in ENTITIES if active_config().carries(spec.key, entity.name)]


def store_checks(spec: StoreSpec, entity: Entity) -> list[SafetyCheck]:
    checks = []
    if spec.captures:
        checks.append(_check(
            capture_key(spec.key, entity), "capture_lag",
            f"How far capture of {entity.name} is behind {spec.label}, and how long webhook hints have waited.",
            {spec.key}, _store_check(spec, lambda r, store, scope: safety.capture_lag(
                store, entity, r.hub.hub(), r.sync_settings.thresholds()))))
    target = publish_key(spec.key, entity)
    checks += [
        _check(target, "store_contract",
               f"What the latest runs wrote to {spec.label} of {entity.name} meets the contract, and what they "
               f"read from it that did not waits in quarantine (a warning); the nightly sweep validates every "
               f"row it holds. Failure cases as metadata.",
               {spec.key}, _store_check(spec, _store_contract(spec, entity))),
        _check(target, "consistent_with_hub",
               f"Every {entity.name} the latest runs resolved reached {spec.label} at its golden version or "
               f"waits for a reason; the nightly sweep compares row counts and content checksums of all of them.",
               {spec.key}, _store_check(spec, _consistency(spec, entity))),
        _check(target, "write_errors",
               f"Error rate writing {entity.name} to {spec.label} in the latest run, and errors left unresolved.",
               {spec.key}, _store_check(spec, lambda r, store, scope: safety.errors(
                   r.hub.hub(), spec.key, entity, r.sync_settings.thresholds()))),
    ]
    if spec.rate_limited_errors and entity is _carried(spec)[0]:  # the budget is the store's, not an entity's
        checks.append(_check(
            target, "rate_limits",
            f"429s and seconds throttled by {spec.label} over the recent runs; none may fail.",
            {spec.key}, _store_check(spec, lambda r, store, scope: safety.rate_limits(
                r.hub.hub(), spec, r.sync_settings.thresholds()))))
    return checks


def _unique_keys(resources: Any, scope: Scope, entity: Entity) -> Verdict:
    hub = resources.hub.hub()
    if not scope.sweep:
        return safety.unique_keys_in_window(hub, entity, scope.run_ids)
    stores = [getattr(resources, s.key).store(hub) for s in _configured(resources, sources())]
    return safety.unique_natural_keys(hub, stores, entity)


def hub_checks(entity: Entity) -> list[SafetyCheck]:
    checks = [
        _check(hub_key(entity), "quarantine", f"{entity.name.capitalize()} records waiting in quarantine.", set(),
               lambda r, scope: safety.quarantine(r.hub.hub(), entity)),
        _check(hub_key(entity), "conflict_rate",
               f"Share of {entity.name} changes that conflicted over the recent runs.", set(),
               lambda r, scope: safety.conflict_rate(r.hub.hub(), entity, r.sync_settings.thresholds())),
    ]
    if entity.natural_key:
        checks.append(_check(
            hub_key(entity), "unique_keys",
            f"No {entity.natural_key} of the {entity.name} the latest runs resolved is held by two records, and "
            f"none read from a store waits in quarantine because another record owns it (held back by the "
            f"resolve); the nightly sweep reads every store.", {s.key for s in sources()},
            lambda r, scope: _unique_keys(r, scope, entity)))
    return checks


def build_checks() -> list[dg.AssetChecksDefinition]:
    groups = [
        check_group("safety_gate", "The gate's checks on safety/preflight, before anything is written.",
                    gate_checks(), follows_writes=False),
        check_group("hub_checks", "The hub's checks: quarantine, conflict rate, unique natural keys.",
                    [check for entity in ENTITIES for check in hub_checks(entity)],
                    settles=[check for entity in ENTITIES for check in _gate_run_checks(entity)]),
    ]
    groups += [check_group(f"{spec.key}_checks", f"{spec.label}'s checks: capture lag, contract, consistency with "
                                                 f"the hub, write errors, rate limits.",
                           [check for entity in _carried(spec) for check in store_checks(spec, entity)])
               for spec in STORES]
    return groups
