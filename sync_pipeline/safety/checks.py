"""The safety checks as plain functions over the hub and the stores: each returns a Verdict.

Dagster wraps them as asset checks (`defs/checks.py`); tests call them directly. A verdict is PASS, WARN
or FAIL with a reason an operator can act on, and metadata with the evidence.

Most checks come in two scopes. A sync's checks (and the checks run alone) look at a window: the records the
latest runs resolved or published (less the runs the check has already passed over once they finished), what
is pending for the stores, the ledger rows and conflicts of those runs, and what capture held back; none lists
a whole store or loads the whole hub, so a sync costs what changed. The nightly sweep (after the
reconciliation) looks at everything the hub and every store hold.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

import pandera.pandas as pa

from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.canonical import CanonicalValueError, canonical_value
from sync_pipeline.model.contracts import failure_records, frame_for, schema_for
from sync_pipeline.model.entities import Entity
from sync_pipeline.redaction import redact_text
from sync_pipeline.settings import Thresholds
from sync_pipeline.stores.base import ReconcilableStore, SourceStore, Store, StoreSpec


class Status(str, Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass
class Verdict:
    status: Status
    reason: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def passed(cls, reason: str, **metadata: Any) -> Verdict:
        return cls(Status.PASS, reason, metadata)

    @classmethod
    def warn(cls, reason: str, **metadata: Any) -> Verdict:
        return cls(Status.WARN, reason, metadata)

    @classmethod
    def fail(cls, reason: str, **metadata: Any) -> Verdict:
        return cls(Status.FAIL, reason, metadata)


class Scope:
    """What one check of one evaluation looks at: everything (`sweep`), or its window: the latest runs less
    those it has passed over (`hub.check_windows`)."""

    def __init__(self, hub: Hub, recent_runs: int, check: str, sweep: bool = False) -> None:
        self.sweep, self.check = sweep, check
        self._hub, self._recent_runs = hub, recent_runs

    @cached_property
    def run_ids(self) -> list[str]:
        """The window (read once, when the check first needs it)."""
        return self._hub.window_run_ids(self.check, self._recent_runs)

    def pass_over(self, verdict: Verdict, finished: Callable[[list[str]], set[str]]) -> None:
        """After a verdict that is no FAIL, the runs of the window that had finished (`finished` picks them)
        need not be read again by this check. A check that read no window (a sweep) passes over nothing."""
        if verdict.status is not Status.FAIL and "run_ids" in self.__dict__:
            done = finished(self.run_ids)
            self._hub.pass_over(self.check, [r for r in self.run_ids if r in done], self._recent_runs)


# Golden records read and validated at a time: memory stays bounded by a page, and a page is large enough that
# pandera's fixed cost per validation (half the time at 1,000 a page) is small beside the values'.
PENDING_PAGE = 5000


def not_configured(store: str) -> Verdict:
    return Verdict.warn(f"{store} is not configured: it is not synced (optional store)", configured=False)


# -- connection and capture -----------------------------------------------------------------------------


def connection(store: Store) -> Verdict:
    """Reachable, authenticated, and allowed to do what the sync needs."""
    try:
        health = store.check()
    except Exception as exc:  # noqa: BLE001 - any failure to check is a failed check
        return Verdict.fail(f"{store.name} check failed: {type(exc).__name__}: {redact_text(str(exc))}")
    return (Verdict.passed if health.ok else Verdict.fail)(f"{store.name}: {redact_text(health.message)}",
                                                            **health.details)


def capture_installed(store: SourceStore, entity: Entity, hub: Hub) -> Verdict:
    """The change log and both triggers are in place; without them changes are silently missed."""
    status = store.capture_status(entity, hub.get_cursor(store.name, entity.name))
    if status.get("ready"):
        return Verdict.passed(f"change capture of {entity.name} in {store.name} is installed", **status)
    missing = [k for k in ("change_log_present", "row_versions_present", "capture_trigger") if not status.get(k)]
    return Verdict.fail(f"change capture of {entity.name} in {store.name} is broken: missing "
                        f"{', '.join(missing)}; run `sync-pipeline install`, then reconcile", **status)


def capture_lag(store: SourceStore, entity: Entity, hub: Hub, limits: Thresholds) -> Verdict:
    """How far capture is behind the store, and how long webhook hints have waited."""
    status = store.capture_status(entity, hub.get_cursor(store.name, entity.name))
    backlog = hub.webhook_backlog(store.name, entity.name)
    evidence = {**{k: v for k, v in status.items() if k != "ready"}, **backlog}
    problems = ["never captured yet"] if status.get("never_captured") else []
    if (status.get("seconds_behind") or 0) > limits.lag_seconds:
        problems.append(f"{status['seconds_behind']:.0f} s behind (limit {limits.lag_seconds:.0f})")
    if (status.get("rows_behind") or 0) > limits.lag_rows:
        problems.append(f"{status['rows_behind']} changes waiting (limit {limits.lag_rows})")
    if backlog["oldest_hint_seconds"] > limits.inbox_age_seconds:
        problems.append(f"{backlog['pending_hints']} webhook hints waiting, oldest "
                        f"{backlog['oldest_hint_seconds']:.0f} s (limit {limits.inbox_age_seconds:.0f})")
    if problems:
        return Verdict.warn(f"capture of {entity.name} from {store.name} lags: " + "; ".join(problems), **evidence)
    return Verdict.passed(f"capture of {entity.name} from {store.name} is current", **evidence)


# -- integrity ------------------------------------------------------------------------------------------


def _contract(entity: Entity, pages: Iterable[list[dict[str, Any]]], where: str) -> Verdict:
    """Validate rows page by page (memory bounded by a page), summing the failures."""
    rows = failures = 0
    columns: set[str] = set()
    checks: set[str] = set()
    sample: list[dict[str, Any]] = []
    for page in pages:
        rows += len(page)
        frame = frame_for(entity, page)
        frame.loc[:, "id"] = [str(r["id"]) if "id" in r else None for r in page]  # ids as text, rows uncopied
        try:
            schema_for(entity).validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            cases = failure_records(exc)
            failures += len(cases)
            columns |= set(cases["column"].astype(str))
            checks |= set(cases["check"].astype(str))
            if len(sample) < 20:
                sample += json.loads(cases.head(20 - len(sample)).to_json(orient="records"))
    if failures:
        return Verdict.fail(f"{failures} contract failures in {entity.name} of {where} ({', '.join(sorted(columns))})",
                            rows=rows, failure_cases=sample, failed_checks=sorted(checks))
    return Verdict.passed(f"{rows} {entity.name} in {where} meet the contract", rows=rows)


def golden_contract(hub: Hub, entity: Entity) -> Verdict:
    """Every live golden record meets the entity's contract: nothing invalid can spread from the hub."""
    rows = [{"id": record_id, **data} for record_id, (_, data) in hub.golden_snapshot(entity.name).items()
            if data is not None]
    return _contract(entity, [rows], "the hub")


def _live(page: list[tuple[str, dict[str, Any] | None]]) -> list[dict[str, Any]]:
    """The rows to validate of a page of golden records: the live ones, with their ids."""
    return [{"id": record_id, **data} for record_id, data in page if data is not None]


def _pending_pages(hub: Hub, entity: Entity, run_ids: Sequence[str], targets: Sequence[str]
                   ) -> Iterable[list[dict[str, Any]]]:
    """The live golden records the window resolved, then every page of those a target has not seen yet
    (each record once)."""
    validated: set[str] = set()
    for resolved in hub.touched_golden_pages(entity.name, run_ids, page=PENDING_PAGE):
        validated.update(record_id for record_id, _ in resolved)
        yield _live(resolved)
    for store in targets:
        after = None
        while page := hub.unseen_by(store, entity.name, PENDING_PAGE, after):
            after = page[-1].record_id
            fresh = [g for g in page if g.record_id not in validated and not g.deleted and g.data is not None]
            validated.update(g.record_id for g in fresh)
            yield [{"id": g.record_id, **(g.data or {})} for g in fresh]
            if len(page) < PENDING_PAGE:
                break


def pending_golden_contract(hub: Hub, entity: Entity, run_ids: Sequence[str], targets: Sequence[str]) -> Verdict:
    """The window's form of `golden_contract`: the golden records the latest runs resolved and every one a
    configured target has not seen yet (what this run will publish) meet the contract."""
    return _contract(entity, _pending_pages(hub, entity, run_ids, targets),
                     "the hub's latest runs and pending publishes")


def store_contract(store: ReconcilableStore, entity: Entity, hub: Hub) -> Verdict:
    """What the store holds meets the contract (invalid records there are quarantined, not synced)."""
    verdict = _contract(entity, [store.rows(entity)], store.name)
    quarantined = hub.open_quarantine(store.name, entity.name)
    verdict.metadata["open_quarantine"] = quarantined
    if verdict.status is Status.FAIL:
        verdict.status = Status.WARN  # the sync quarantines these; the store's owners must fix them
        verdict.reason += f"; {quarantined} quarantined, waiting for a fix in {store.name}"
    return verdict


def held_back(hub: Hub, store: str, entity: Entity, run_ids: Sequence[str], validated_by: str) -> Verdict:
    """The window's form of `store_contract`, from what the sync reads and writes anyway: the records it
    published to the store in the latest runs meet the contract, and those it read from the store that did
    not wait in quarantine (a WARN naming them, to be fixed in the store). A golden version the hub's contract
    check (`validated_by`) validated after its resolve is not validated again (`Hub.published_golden_pages`):
    a first sync's records are read by that check, then published."""
    validated = 0

    def pages() -> Iterator[list[dict[str, Any]]]:
        nonlocal validated
        for page in hub.published_golden_pages(entity.name, run_ids, store, validated_by, page=PENDING_PAGE):
            validated += sum(1 for *_, done in page if done)
            yield _live([(record_id, data) for record_id, data, done in page if not done])

    verdict = _contract(entity, pages(), f"what the latest runs wrote to {store}")
    verdict.metadata["validated_by_the_hub_contract"] = validated
    if validated:
        verdict.reason += f" ({validated} more validated by {validated_by})"
    quarantined = hub.open_quarantine(store, entity.name)
    verdict.metadata["open_quarantine"] = quarantined
    if verdict.status is Status.PASS and quarantined:
        shown = ", ".join(str(r["record_id"]) for r in hub.open_quarantine_rows(store, entity.name, 5))
        return Verdict.warn(f"{quarantined} {entity.name} read from {store} break the contract and wait in "
                            f"quarantine for a fix in {store}: {shown}", **verdict.metadata)
    return verdict


def quarantine(hub: Hub, entity: Entity) -> Verdict:
    rows = hub.quarantine_summary(entity.name)
    total = sum(r["records"] for r in rows)
    if total:
        return Verdict.warn(f"{total} {entity.name} records quarantined, waiting for a fix at their source",
                            by_store=rows)
    return Verdict.passed(f"no {entity.name} in quarantine")


# -- idempotency ----------------------------------------------------------------------------------------


def applied_once(hub: Hub, entity: Entity, run_ids: Sequence[str] | None = None) -> Verdict:
    """No change was applied twice: each event the ledger let through has one outcome, and in the golden
    history one source change (store, modification time, content) made at most one version, whatever
    event keys it arrived under (a re-capture after a cursor reset, say). With `run_ids`, the ledger rows
    and records of those runs (a window), else all."""
    events = hub.events_recorded_twice(entity.name, run_ids)
    changes = hub.changes_applied_twice(entity.name, run_ids)
    if events or changes:
        return Verdict.fail(f"{len(events) + len(changes)} {entity.name} changes were applied more than once",
                            events=events[:20], changes=changes[:20])
    return Verdict.passed(f"every {entity.name} change was applied at most once")


def unique_natural_keys(hub: Hub, stores: list[ReconcilableStore], entity: Entity) -> Verdict:
    """No natural key (e-mail, domain) is held by two records in the hub or in any store."""
    key = entity.natural_key
    if key is None:
        return Verdict.passed(f"{entity.name} have no natural key")
    key_type = entity.field(key).type

    def canonical(value: Any) -> Any:  # `Ada@x.com` and `ada@x.com` are one key
        try:
            return canonical_value(key_type, value)
        except CanonicalValueError:
            return value  # reported by the contract checks

    found: dict[str, list[str]] = {}
    golden = [data for _, data in hub.golden_snapshot(entity.name).values() if data is not None]
    for where, values in [("hub", [d.get(key) for d in golden]),
                          *((s.name, [r.get(key) for r in s.rows(entity)]) for s in stores)]:
        counts = Counter(canonical(v) for v in values if v is not None)
        dupes = sorted(str(v) for v, n in counts.items() if n > 1)
        if dupes:
            found[where] = dupes[:10]
    if found:
        return _duplicates(key, found)
    return Verdict.passed(f"every {key} of {entity.name} is unique in the hub and "
                          f"{len(stores)} store{'s' if len(stores) != 1 else ''}")


def _duplicates(key: str, found: dict[str, list[str]]) -> Verdict:
    named = "; ".join(f"{where}: {', '.join(values[:5])}" for where, values in found.items())
    return Verdict.fail(f"duplicate {key} values (held back from the hub until fixed) in {named}",
                        duplicates=found)


def unique_keys_in_window(hub: Hub, entity: Entity, run_ids: Sequence[str]) -> Verdict:
    """The window's form of `unique_natural_keys`, from what the sync reads anyway: no natural key the latest
    runs resolved is held by two live golden records, and no record read from a store (Twenty included)
    waits in quarantine because another record owns its key (the resolve held it back)."""
    key = entity.natural_key
    if key is None:
        return Verdict.passed(f"{entity.name} have no natural key")
    touched, shared = hub.shared_keys_in_runs(entity.name, key, run_ids)
    found: dict[str, list[str]] = {}
    if shared:
        found["hub"] = shared[:10]
    for row in hub.held_back_keys(entity.name, key):
        found.setdefault(row["store"], []).append(str(row["value"]))
    if found:
        return _duplicates(key, found)
    return Verdict.passed(f"the {touched} {key} values the latest runs resolved are unique in the hub, and "
                          f"no record read from a store is held back for a {key} another record owns")


# -- conflicts ------------------------------------------------------------------------------------------


def conflicts_recorded(hub: Hub, entity: Entity, run_ids: Sequence[str] | None = None) -> Verdict:
    """Every conflict names a winner whose content the hub took (or a later version superseded). With
    `run_ids`, the conflicts of those runs (a window), else all."""
    broken = hub.broken_conflicts(entity.name, run_ids)
    if broken:
        return Verdict.fail(f"{len(broken)} {entity.name} conflicts whose recorded winner the hub does not hold",
                            conflicts=broken[:20])
    return Verdict.passed(f"every {entity.name} conflict has a winner the hub holds or superseded")


def conflict_rate(hub: Hub, entity: Entity, limits: Thresholds) -> Verdict:
    rate = hub.conflict_rate(entity.name, limits.recent_runs)
    evidence = {"conflicts": rate["conflicts"], "resolved": rate["resolved"], "threshold": limits.conflict_rate}
    if rate["resolved"] and rate["conflicts"] / rate["resolved"] > limits.conflict_rate:
        return Verdict.warn(f"{rate['conflicts']} conflicts in {rate['resolved']} {entity.name} changes over the "
                            f"last {limits.recent_runs} runs: above {limits.conflict_rate:.0%}", **evidence)
    return Verdict.passed(f"{rate['conflicts']} conflicts in {rate['resolved']} {entity.name} changes", **evidence)


# -- errors and rate limits -----------------------------------------------------------------------------


def errors(hub: Hub, store: str, entity: Entity, limits: Thresholds) -> Verdict:
    """Error rate of the latest run and errors left unresolved for too long."""
    summary = hub.error_summary(store, entity.name, limits.unresolved_error_minutes)
    if summary["stale_unresolved"]:
        return Verdict.fail(f"{summary['stale_unresolved']} errors writing {entity.name} to {store} unresolved for "
                            f"over {limits.unresolved_error_minutes:.0f} min", **summary)
    attempted = max(summary["latest_run_attempted"], 1)
    if summary["latest_run_errors"] / attempted > limits.error_rate:
        return Verdict.warn(f"{summary['latest_run_errors']} of {summary['latest_run_attempted']} {entity.name} "
                            f"failed in {store}'s latest run", **summary)
    return Verdict.passed(f"{entity.name} in {store}: {summary['unresolved']} unresolved errors", **summary)


def rate_limits(hub: Hub, spec: StoreSpec, limits: Thresholds) -> Verdict:
    """429s and time throttled over the recent runs; a write that failed on a rate limit and has not gone
    through since (its error still open) is a failure."""
    store = spec.key
    usage = hub.api_usage(store, limits.recent_runs, spec.rate_limited_errors)
    if usage["rate_limit_failures"]:
        return Verdict.fail(f"{usage['rate_limit_failures']} writes to {store} failed on its rate limit "
                            "and have not gone through since", **usage)
    if usage["rate_limited_responses"]:
        return Verdict.warn(f"{usage['rate_limited_responses']} rate-limited responses from {store}, "
                            f"{usage['seconds_throttled']:.1f} s throttled, all retried", **usage)
    return Verdict.passed(f"{store} within its rate limit ({usage['requests']} requests, "
                          f"{usage['seconds_throttled']:.1f} s paced)", **usage)


# -- consistency ----------------------------------------------------------------------------------------


def quarantined_record_ids(hub: Hub, store: str, entity: Entity) -> set[str]:
    """The records of a store waiting in the open quarantine, under the ids its inventory lists them by: the
    canonical id where the hub links the store's id to one, else the store's own id."""
    store_ids = sorted(hub.open_quarantine_ids(store, entity.name))
    if not store_ids:
        return set()
    canonical = hub.record_ids_for(store, entity.name, store_ids)
    return {canonical.get(i, i) for i in store_ids}


def consistency(store: ReconcilableStore, entity: Entity, hub: Hub) -> Verdict:
    """Row counts and content checksums of the store against the hub. A record of the store that sits in
    the open quarantine is held back from the hub on purpose: it is counted as quarantined (a WARN naming
    it, to be fixed at its source), not as extra or different."""
    report = store.compare_with_hub(entity, hub.golden_snapshot(entity.name))
    held_back = quarantined_record_ids(hub, store.name, entity)
    quarantined = sorted(i for i in {*report.extra, *report.mismatched} if i in held_back)
    extra = [i for i in report.extra if i not in held_back]
    mismatched = [i for i in report.mismatched if i not in held_back]
    evidence = {"hub_rows": report.hub_rows, "store_rows": report.store_rows,
                "hub_checksum": report.hub_checksum, "store_checksum": report.store_checksum,
                "missing": report.missing[:20], "extra": extra[:20], "mismatched": mismatched[:20],
                "quarantined": len(quarantined), "quarantined_ids": quarantined[:20]}
    if report.consistent:
        return Verdict.passed(f"{entity.name} in {store.name} match the hub ({report.store_rows} rows)", **evidence)
    if quarantined and not (report.missing or extra or mismatched or report.duplicated):
        shown = ", ".join(quarantined[:5]) + (f" and {len(quarantined) - 5} more" if len(quarantined) > 5 else "")
        return Verdict.warn(f"{entity.name} in {store.name} match the hub except {len(quarantined)} quarantined, "
                            f"held back until fixed in {store.name}: {shown}", **evidence)
    held = f", {len(quarantined)} quarantined" if quarantined else ""
    return Verdict.fail(f"{entity.name} in {store.name} differ from the hub: {len(report.missing)} missing, "
                        f"{len(extra)} extra, {len(mismatched)} different{held}", **evidence)


def delivered(hub: Hub, store: str, entity: Entity, run_ids: Sequence[str]) -> Verdict:
    """The window's form of `consistency`, from the hub's own record of what each store holds: every record
    the latest runs resolved or published reached the store at its golden version, or waits for a reason
    (an open write error of the store, which `write_errors` reports; quarantine, a WARN naming it)."""
    report = hub.undelivered(store, entity.name, run_ids)
    held_back = sorted(quarantined_record_ids(hub, store, entity))
    evidence = {"runs": len(run_ids), "missing": report["unexplained"][:20],
                "waiting_on_errors": len(report["explained"]), "quarantined": len(held_back),
                "quarantined_ids": held_back[:20]}
    if report["unexplained"]:
        return Verdict.fail(f"{len(report['unexplained'])} {entity.name} of the latest runs never reached {store} "
                            f"and no error says why: {', '.join(report['unexplained'][:5])}", **evidence)
    if held_back:
        shown = ", ".join(held_back[:5]) + (f" and {len(held_back) - 5} more" if len(held_back) > 5 else "")
        return Verdict.warn(f"{entity.name} in {store} match the hub except {len(held_back)} quarantined, held "
                            f"back until fixed in {store}: {shown}", **evidence)
    waiting = f"; {len(report['explained'])} wait on open errors" if report["explained"] else ""
    return Verdict.passed(f"every {entity.name} of the latest runs reached {store}{waiting}", **evidence)
