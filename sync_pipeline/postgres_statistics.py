"""Planner statistics kept fresh after bulk loads, in the hub and in a store's change log alike: a table is
analyzed once it changed by more than its size at its last analysis (and by a floor), so a table is analyzed
each time it doubles and the cost stays a small share of the load's. Planned from the near-empty table it last
counted, a read of a bulk-loaded table took seconds instead of milliseconds, once per batch or page."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql
from psycopg.rows import DictRow


def analyze_grown(conn: psycopg.Connection[DictRow], tables: Sequence[tuple[str, str]], floor: int) -> list[str]:
    """Analyze those of the (schema, table) pairs that grew or changed by more than their size at their last
    analysis plus `floor` rows; returns their names."""
    grown = conn.execute(
        """select s.schemaname, s.relname from pg_stat_user_tables s join pg_class c on c.oid = s.relid
           where (s.schemaname, s.relname) in (select * from unnest(%b::text[], %b::text[]))
             and s.n_mod_since_analyze > greatest(c.reltuples, 0) + %s
           order by s.relname""", ([schema for schema, _ in tables], [name for _, name in tables], floor)).fetchall()
    names = [(row["schemaname"], row["relname"]) for row in grown]
    if names:
        conn.execute(sql.SQL("analyze {}").format(sql.SQL(", ").join(sql.Identifier(*name) for name in names)))
    return [name for _, name in names]
