"""The store registry and capabilities: what each store can do follows from the code it has."""

from __future__ import annotations

from sync_pipeline.model.canonical import canonical_record, content_hash
from sync_pipeline.model.entities import entity
from sync_pipeline.stores.base import (
    ChangeLogSource,
    Installable,
    Reconcilable,
    Source,
    StoreSpec,
    Target,
    live_hashes,
)
from sync_pipeline.stores.registry import STORES, priority_order, sources, store_spec, sync_log_host, targets

PEOPLE = entity("people")


def test_every_store_declares_a_spec_its_class_honours():
    keys = [s.key for s in STORES]
    assert len(keys) == len(set(keys))
    for spec in STORES:
        assert spec.can(Reconcilable), f"{spec.key} cannot be compared with the hub"
        assert spec.publishes, f"{spec.key} is not a target"
        assert (spec.priority is not None) == spec.captures, f"{spec.key}: a tiebreak rank is for sources only"


def test_capabilities_are_derived_from_the_classes():
    assert {s.key for s in sources()} == {"twenty", "supabase", "local_db"}
    assert {s.key for s in targets()} == {"twenty", "supabase", "local_db", "bigquery"}
    assert {s.key for s in STORES if s.has_change_log} == {"supabase", "local_db"}
    assert {s.key for s in STORES if s.can(Installable)} == {"supabase", "local_db", "bigquery"}
    assert {s.key for s in STORES if s.rate_limited_errors} == {"twenty"}
    assert sync_log_host() == store_spec("bigquery")


def test_a_class_missing_part_of_an_interface_does_not_have_the_capability():
    class HalfSource:
        def capture(self, entity, cursor, limit): ...

        def capture_status(self, entity, cursor): ...  # no refresh

    class Publisher:
        def apply(self, entity, records): ...

    assert not issubclass(HalfSource, Source)
    spec = StoreSpec(key="x", label="X", kinds=frozenset(), store_class=Publisher)
    assert spec.publishes and not spec.captures and not spec.has_change_log
    assert not spec.can(ChangeLogSource) and spec.can(Target)


def test_priority_order_follows_the_specs():
    assert priority_order() == ("twenty", "supabase", "local_db")


def test_unknown_store_names_the_known_ones():
    try:
        store_spec("hubspot")
    except KeyError as exc:
        assert "twenty" in str(exc) and "hubspot" in str(exc)
    else:
        raise AssertionError("an unknown store must raise")


def test_a_field_added_after_a_record_was_written_reads_as_null():
    stored_row = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}
    old_golden = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}  # lacks new keys
    hashes = live_hashes(PEOPLE, {"p1": (3, old_golden), "p2": (4, None)})
    assert hashes == {"p1": content_hash(canonical_record(PEOPLE, stored_row))}
