"""What the live database says about a table (`pg_catalog`): its columns and their types, whether
row-level security is on, its triggers. Read by install (what to create), the schema checks (drift, RLS)
and the apply (the casts into the app's own column types)."""

from __future__ import annotations

from dataclasses import dataclass
import psycopg
from psycopg.rows import DictRow


@dataclass(frozen=True)
class Column:
    type: str  # pg_type.typname: int4, varchar, a user enum's name...
    declared: str  # format_type(): what a cast to the column's type names, e.g. character varying(80)
    is_enum: bool
    identity: str = ""  # pg_attribute.attidentity: "a" generated always, "d" by default, "" none


@dataclass(frozen=True)
class LiveTable:
    schema: str
    name: str
    columns: dict[str, Column]  # in column order
    row_level_security: bool
    triggers: dict[str, bool]  # trigger name -> enabled


def describe(conn: psycopg.Connection[DictRow], schema: str, table: str) -> LiveTable | None:
    """The table as the catalog holds it, or None when there is no such table."""
    rel = conn.execute(
        """select c.oid, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = %s and c.relname = %s and c.relkind in ('r', 'p')""", (schema, table)).fetchone()
    if rel is None:
        return None
    columns = conn.execute(
        """select a.attname, t.typname, t.typtype, format_type(a.atttypid, a.atttypmod) as declared,
                  a.attidentity::text as identity
           from pg_attribute a join pg_type t on t.oid = a.atttypid
           where a.attrelid = %s and a.attnum > 0 and not a.attisdropped order by a.attnum""",
        (rel["oid"],)).fetchall()
    triggers = conn.execute(
        "select tgname, tgenabled <> 'D' as enabled from pg_trigger where tgrelid = %s and not tgisinternal",
        (rel["oid"],)).fetchall()
    return LiveTable(
        schema=schema, name=table,
        columns={c["attname"]: Column(c["typname"], c["declared"], c["typtype"] == "e", c["identity"])
                 for c in columns},
        row_level_security=rel["relrowsecurity"],
        triggers={t["tgname"]: t["enabled"] for t in triggers})


def relation_names(conn: psycopg.Connection[DictRow], schema: str) -> set[str]:
    """The names of the tables (and other relations) in `schema`; none when it does not exist."""
    return {r["relname"] for r in conn.execute(
        """select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = %s""", (schema,)).fetchall()}
