"""Data contracts: a pandera schema per entity, generated from the registry.

Types are checked with the same converters that produce canonical values (`canonical.py`), so a record
that passes its contract always canonicalises, and the reason a record fails is the converter's own words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd
import pandera.pandas as pa

from sync_pipeline.model.canonical import NUL_REASON, CanonicalValueError, canonical_record, canonical_value
from sync_pipeline.model.entities import Entity, Field, FieldType

_NOT_EMPTY = "non-empty"
_NO_NUL = "free of NUL characters"
_NO_NUL_CHECK = pa.Check(lambda v: not (isinstance(v, str) and "\x00" in v), element_wise=True, ignore_na=True,
                         name=_NO_NUL, error=_NO_NUL)


def _type_check(f: Field) -> pa.Check:
    def convertible(value: Any) -> bool:
        if isinstance(value, str):
            value = value.replace("\x00", "")  # a NUL has its own check and reason
        try:
            canonical_value(f.type, value, f.choices)
        except CanonicalValueError:
            return False
        return True

    label = {
        FieldType.EMAIL: "a well-formed e-mail address",
        FieldType.ENUM: "one of " + ", ".join(f.choices),
    }.get(f.type, f"a valid {f.type.value}")
    return pa.Check(convertible, element_wise=True, ignore_na=True, name=label, error=label)


def _carried(entity: Entity, fields: tuple[str, ...] | None) -> tuple[Field, ...]:
    """The entity's fields a store carries (every field when None), in the entity's order."""
    return entity.fields if fields is None else tuple(f for f in entity.fields if f.name in fields)


@cache
def schema_for(entity: Entity, fields: tuple[str, ...] | None = None) -> pa.DataFrameSchema:
    """The entity's contract: id and every field present, required fields not missing, values typed.

    `fields`: the fields a store carries; a field it does not carry is not part of its contract."""
    columns = {"id": pa.Column(object, checks=[_type_check(Field("id", FieldType.UUID)), _NO_NUL_CHECK],
                               nullable=False)}
    for f in _carried(entity, fields):
        # Any value has a text form (a NUL has its own check): a text field's type check could never fail, and
        # per value it was most of a page's validation.
        checks = [_NO_NUL_CHECK] if f.type is FieldType.TEXT else [_type_check(f), _NO_NUL_CHECK]
        if f.required:
            checks.append(
                pa.Check(lambda v: not (isinstance(v, str) and v.strip() == ""), element_wise=True,
                         ignore_na=True, name=_NOT_EMPTY, error=_NOT_EMPTY)
            )
        if f.type is FieldType.INTEGER:
            checks.append(pa.Check(lambda v: _non_negative(v), element_wise=True, ignore_na=True,
                                   name="non-negative", error="non-negative"))
        columns[f.name] = pa.Column(object, checks=checks, nullable=not f.required, required=True)
    # Not strict: stores keep bookkeeping columns of their own (sync_version, updated_at) beside the contract.
    return pa.DataFrameSchema(columns, strict=False, name=entity.name)


def _non_negative(value: Any) -> bool:
    try:
        return int(canonical_value(FieldType.INTEGER, value)) >= 0
    except (CanonicalValueError, TypeError):
        return True  # reported by the type check


@dataclass
class Rejected:
    index: int
    raw: dict[str, Any]
    reason: str
    failures: list[dict[str, Any]]


@dataclass
class ValidationResult:
    valid: list[tuple[int, dict[str, Any]]]  # (input index, canonical record with its id)
    rejected: list[Rejected]


def frame_for(entity: Entity, rows: list[dict[str, Any]], fields: tuple[str, ...] | None = None
              ) -> pd.DataFrame:
    columns = ["id", *(f.name for f in _carried(entity, fields))]
    return pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns, dtype=object)


def describe_failure(column: Any, check: Any, case: Any) -> str:
    check = str(check)
    if check == "not_nullable":
        return f"{column}: required field is missing"
    if check == "column_in_schema":
        return f"unexpected column {case}"
    if check == "column_in_dataframe":
        return f"missing column {case}"
    if check == _NOT_EMPTY:
        return f"{column}: required field is empty"
    if check == _NO_NUL:
        return f"{column}: {NUL_REASON}"
    return f"{column}: {case!r} is not {check}"


def failure_records(exc: pa.errors.SchemaErrors) -> pd.DataFrame:
    cases = exc.failure_cases.copy()
    cases["failure_case"] = cases["failure_case"].astype(str)
    return cases


def validate_records(entity: Entity, rows: list[dict[str, Any]], fields: tuple[str, ...] | None = None
                     ) -> ValidationResult:
    """Split rows into canonical valid records and rejected ones with readable reasons.

    `fields`: those the source store carries (every field when None); a valid record holds only them."""
    if not rows:
        return ValidationResult([], [])
    reasons: dict[int, list[str]] = {}
    failures: dict[int, list[dict[str, Any]]] = {}
    try:
        schema_for(entity, fields).validate(frame_for(entity, rows, fields), lazy=True)
    except pa.errors.SchemaErrors as exc:
        for case in json.loads(failure_records(exc).to_json(orient="records")):
            index = case.get("index")
            targets: range | list[int]
            if index is None:  # a schema-level failure concerns every row
                targets = range(len(rows))
            else:
                targets = [int(index)]
            for i in targets:
                reasons.setdefault(i, []).append(
                    describe_failure(case.get("column"), case.get("check"), case.get("failure_case")))
                failures.setdefault(i, []).append(case)
    valid, rejected = [], []
    for i, row in enumerate(rows):
        if i in reasons:
            rejected.append(Rejected(i, row, "; ".join(dict.fromkeys(reasons[i])), failures[i]))
            continue
        record = canonical_record(entity, row, fields)
        record["id"] = canonical_value(FieldType.UUID, row["id"])
        valid.append((i, record))
    return ValidationResult(valid, rejected)
