"""The safety checks as Dagster asset checks, each beside the asset it checks.

The gate is `safety/preflight`, upstream of every capture: its checks run first in `sync_with_safety_check`.
Only the hub's own integrity blocks everything (contract, applied once, conflicts recorded): with it broken,
nothing may spread. What one store or one record breaks holds back that store or that record only: a store
that is down or whose change capture is gone fails its own steps (recorded; the others sync), and a
duplicate natural key is held back by the resolve, which quarantines it with its reason; their checks FAIL
and the verdict names the store and the records, but they do not stop the other stores. Monitoring checks
sit on the store and hub assets they describe. The safety command runs all of them through Dagster.

No `from __future__ import annotations` here: Dagster inspects the context annotation at definition time.
"""

from typing import Any, Callable

import dagster as dg

from sync_pipeline.defs.assets import PREFLIGHT_KEY, capture_key, hub_key, publish_key
from sync_pipeline.model.entities import ENTITIES, Entity
from sync_pipeline.redaction import redact_text
from sync_pipeline.safety import checks as safety
from sync_pipeline.safety.checks import Status, Verdict
from sync_pipeline.stores.base import StoreSpec
from sync_pipeline.stores.registry import STORES, sources


@dg.asset(
    key=PREFLIGHT_KEY,
    group_name="safety",
    kinds={"python"},
    description="The gate of a safe sync, evaluated before anything is written. The hub's integrity (contract, "
                "idempotency, conflict invariants) blocks everything; a store that is down or lost its change "
                "capture, or a duplicate natural key, fails its check and holds back that store or record only.",
)
def preflight() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"gate": "the blocking checks decide"})


def to_result(verdict: Verdict) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {"status": verdict.status.value, "reason": verdict.reason}
    for key, value in verdict.metadata.items():
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, (list, dict)) else value
    # A warning passes in Dagster's terms (its UI labels any failed check "Failed"); the `status` metadata, the
    # description and the verdict say WARN.
    warned = verdict.status is Status.WARN
    return dg.AssetCheckResult(passed=verdict.status is not Status.FAIL, severity=dg.AssetCheckSeverity.ERROR,
                               description=f"WARN: {verdict.reason}" if warned else verdict.reason,
                               metadata=metadata)


def _check(asset: dg.AssetKey, name: str, description: str, resources: set[str],
           evaluate: Callable[[Any], Verdict], blocking: bool = False) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=name, description=description, blocking=blocking,
                    required_resource_keys={"hub", "sync_settings", *resources})
    def _run(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        try:
            verdict = evaluate(context.resources)
        except Exception as exc:  # noqa: BLE001 - a check that cannot run is a failed check, never a silent one
            verdict = Verdict.fail(f"the check could not run: {type(exc).__name__}: {redact_text(str(exc))[:300]}")
        return to_result(verdict)

    return _run


def _store_check(spec: StoreSpec, evaluate: Callable[[Any, Any], Verdict]) -> Callable[[Any], Verdict]:
    """Evaluate against the store when it is configured; an optional store that is not is a WARN, one that is
    set up by halves is a FAIL."""
    def run(resources: Any) -> Verdict:
        resource = getattr(resources, spec.key)
        if resource.misconfiguration:
            return Verdict.fail(f"{spec.label} is misconfigured: {resource.misconfiguration}")
        if not resource.configured:
            return safety.not_configured(spec.label)
        return evaluate(resources, resource.store(resources.hub.hub()))

    return run


def _configured_sources(resources: Any) -> list:
    hub = resources.hub.hub()
    return [getattr(resources, s.key).store(hub) for s in sources() if getattr(resources, s.key).configured]


def _connection_check(spec: StoreSpec) -> dg.AssetChecksDefinition:
    return _check(PREFLIGHT_KEY, f"{spec.key}_connection",
                  f"{spec.label} is reachable, accepts our credentials and allows what the sync needs.",
                  {spec.key}, _store_check(spec, lambda r, store: safety.connection(store)))


def _capture_installed_check(spec: StoreSpec, entity: Entity) -> dg.AssetChecksDefinition:
    return _check(PREFLIGHT_KEY, f"{spec.key}_{entity.name}_capture_installed",
                  f"The change log and triggers of {entity.name} in {spec.label} are in place: without them "
                  f"edits there would be missed.", {spec.key},
                  _store_check(spec, lambda r, store: safety.capture_installed(store, entity, r.hub.hub())))


def _hub_preflight_checks(entity: Entity) -> list[dg.AssetChecksDefinition]:
    checks = [
        _check(PREFLIGHT_KEY, f"{entity.name}_contract",
               f"Every golden {entity.name} record meets the pandera contract (required fields, types, "
               f"formats): nothing invalid can spread from the hub.", set(),
               lambda r: safety.golden_contract(r.hub.hub(), entity), blocking=True),
        _check(PREFLIGHT_KEY, f"{entity.name}_applied_once",
               f"No captured {entity.name} change was applied twice (ledger vs per-record outcomes).", set(),
               lambda r: safety.applied_once(r.hub.hub(), entity), blocking=True),
        _check(PREFLIGHT_KEY, f"{entity.name}_conflicts_recorded",
               f"Every {entity.name} conflict has a recorded winner the hub holds or superseded.", set(),
               lambda r: safety.conflicts_recorded(r.hub.hub(), entity), blocking=True),
    ]
    if entity.natural_key:
        checks.append(_check(
            PREFLIGHT_KEY, f"{entity.name}_unique_keys",
            f"No {entity.natural_key} of {entity.name} is held by two records, in the hub or any store.",
            {s.key for s in sources()},
            lambda r: safety.unique_natural_keys(r.hub.hub(), _configured_sources(r), entity)))
    return checks


def preflight_checks() -> list[dg.AssetChecksDefinition]:
    checks = [_connection_check(spec) for spec in STORES]
    checks += [_capture_installed_check(spec, entity)
               for spec in STORES if spec.has_change_log for entity in ENTITIES]
    for entity in ENTITIES:
        checks += _hub_preflight_checks(entity)
    return checks


def store_checks(spec: StoreSpec, entity: Entity) -> list[dg.AssetChecksDefinition]:
    checks = []
    if spec.captures:
        checks.append(_check(
            capture_key(spec.key, entity), "capture_lag",
            f"How far capture of {entity.name} is behind {spec.label}, and how long webhook hints have waited.",
            {spec.key}, _store_check(spec, lambda r, store: safety.capture_lag(
                store, entity, r.hub.hub(), r.sync_settings.thresholds()))))
    target = publish_key(spec.key, entity)
    checks += [
        _check(target, "store_contract",
               f"What {spec.label} holds of {entity.name} meets the contract; failure cases as metadata.",
               {spec.key}, _store_check(spec, lambda r, store: safety.store_contract(store, entity, r.hub.hub()))),
        _check(target, "consistent_with_hub",
               f"Row counts and content checksums of {entity.name} in {spec.label} against the hub.",
               {spec.key}, _store_check(spec, lambda r, store: safety.consistency(store, entity, r.hub.hub()))),
        _check(target, "write_errors",
               f"Error rate writing {entity.name} to {spec.label} in the latest run, and errors left unresolved.",
               {spec.key}, _store_check(spec, lambda r, store: safety.errors(
                   r.hub.hub(), spec.key, entity, r.sync_settings.thresholds()))),
    ]
    if spec.rate_limited_errors and entity is ENTITIES[0]:  # the budget is the store's, not an entity's
        checks.append(_check(
            target, "rate_limits",
            f"429s and seconds throttled by {spec.label} over the recent runs; none may fail.",
            {spec.key}, _store_check(spec, lambda r, store: safety.rate_limits(
                r.hub.hub(), spec, r.sync_settings.thresholds()))))
    return checks


def hub_checks(entity: Entity) -> list[dg.AssetChecksDefinition]:
    return [
        _check(hub_key(entity), "quarantine", f"{entity.name.capitalize()} records waiting in quarantine.", set(),
               lambda r: safety.quarantine(r.hub.hub(), entity)),
        _check(hub_key(entity), "conflict_rate",
               f"Share of {entity.name} changes that conflicted over the recent runs.", set(),
               lambda r: safety.conflict_rate(r.hub.hub(), entity, r.sync_settings.thresholds())),
    ]


def build_checks() -> list[dg.AssetChecksDefinition]:
    checks = preflight_checks()
    for entity in ENTITIES:
        checks += hub_checks(entity)
        for spec in STORES:
            checks += store_checks(spec, entity)
    return checks
