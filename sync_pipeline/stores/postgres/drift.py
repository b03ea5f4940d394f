"""Schema drift of a mapped table: the configured columns against the live table. Pure: the catalog is read
by `catalog.describe`. A missing column or one whose type the sync can no longer write is blocking (the
store's capture and publish refuse to run: they would fail or lose the field); a column neither mapped nor
ignored is a warning (someone added it; the sync does not carry it)."""

from __future__ import annotations

from dataclasses import dataclass

from sync_pipeline.stores.postgres.catalog import LiveTable
from sync_pipeline.stores.postgres.tables import COMPATIBLE, MappedTable, expected_types


@dataclass(frozen=True)
class Drift:
    blocking: bool
    column: str | None
    message: str


def table_drift(table: MappedTable, live: LiveTable | None) -> list[Drift]:
    """What differs between the configuration and the live table, blocking problems first."""
    if live is None:
        return [Drift(True, None, f"{table.label}: the table does not exist")]
    problems = []
    for column, expected in expected_types(table).items():
        found = live.columns.get(column)
        if found is None:
            problems.append(Drift(True, column, f"{table.label}: column {column} is missing"))
        elif not (found.type in COMPATIBLE[expected] or (found.is_enum and expected == "text")):
            problems.append(Drift(True, column, f"{table.label}: column {column} is {found.declared}, "
                                                f"the sync writes {expected}"))
    known = {table.mapping.id_column, *table.columns, *table.mapping.ignore_columns}
    problems += [Drift(False, column,
                       f"{table.label}: column {column} is neither mapped nor in ignore_columns")
                 for column in live.columns if column not in known]
    return problems


def blocking(problems: list[Drift]) -> list[Drift]:
    return [p for p in problems if p.blocking]


class SchemaDrift(RuntimeError):
    """A mapped table no longer has a configured column, or its type changed: nothing is read or written
    until the table or the configuration is fixed."""

    def __init__(self, problems: list[Drift]) -> None:
        super().__init__("schema drift: " + "; ".join(p.message for p in problems)
                         + " (fix the table or the sync configuration)")
        self.problems = problems
