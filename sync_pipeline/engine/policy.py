"""The rules around the resolver that decide what a captured change means for the hub and for its store.

Pure functions over what the hub has read for one change: its golden record, what it knows the store holds
(`StoreState`) and, for the own-base rule, the origins of the golden versions after the change's base.
`row_version` is the version the store's row carried when it was edited; None for a store without row
versions (Twenty), whose changes are based on what the hub last knew the store to hold.
"""

from __future__ import annotations

from collections.abc import Iterable

from sync_pipeline.engine.records import Change, GoldenRecord, StoreState
from sync_pipeline.engine.resolver import Resolution

REASSERTED_ORIGIN = "reconciliation"  # a version the hub re-sent unchanged, from no store


def claimed_base(row_version: int | None, state: StoreState) -> int:
    """The golden version a change was made on: its row's version, else the last one the store held."""
    return row_version if row_version is not None else state.seen_version


def is_echo(current: GoldenRecord | None, change: Change, row_version: int | None, state: StoreState) -> bool:
    """Whether a change from a store without row versions is not an edit: it shows a version we wrote to it
    earlier, or it is an older snapshot of the store's own than the hub already took (a late poll behind a
    webhook). Stores with row versions tell us their base, so the resolver sees their echoes itself."""
    if current is None or row_version is not None:
        return False
    return change.content_hash == state.seen_hash or (
        current.origin_store == change.store and change.modified_at < current.origin_modified_at)


def own_base(base: int, store: str, later_versions: Iterable[tuple[int, str]]) -> int:
    """Move the base past the versions the store itself produced (or that reconciliation re-sent unchanged):
    the store holds those already, so only versions from elsewhere make a conflict, and a three-way merge
    starts from the last own one. `later_versions` are (version, origin store) after `base`, oldest first."""
    for version, origin in later_versions:
        if origin not in (store, REASSERTED_ORIGIN):
            break
        base = version
    return base


def overwritten(row_version: int | None, state: StoreState) -> bool:
    """Whether the edit was made on a version older than our last write to the store: the store then holds
    what we wrote, not this change, whatever the resolution."""
    return row_version is not None and row_version < state.written_version


def held_after(resolution: Resolution, change: Change, current: GoldenRecord | None, state: StoreState,
               was_overwritten: bool) -> tuple[int, str | None]:
    """The (version, content hash) the change's store holds once the change is resolved: the hub's result
    when the store already has that content, else whatever it was known to hold before."""
    result = resolution.golden or current
    if result is not None and resolution.store_holds_result(change, current) and not was_overwritten:
        return result.version, result.content_hash
    if result is not None and not was_overwritten and state.seen_version >= result.version:
        # The store held the result until this change, which lost: it now holds the change, and the result
        # must be sent to it again (a delete it echoed earlier in the batch, then re-inserted, say).
        return result.version - 1, change.content_hash
    return state.seen_version, state.seen_hash
