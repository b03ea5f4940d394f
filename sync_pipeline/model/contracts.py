"""Data contracts: a pandera schema per entity, generated from the registry.

Types are checked with the same converters that produce canonical values (`canonical.py`), so a record
that passes its contract always canonicalises, and the reason a record fails is the converter's own words.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from sync_pipeline.model.canonical import NUL_REASON, CanonicalValueError, canonical_value
from sync_pipeline.model.entities import Entity, Field, FieldType

_NOT_EMPTY = "non-empty"
_NO_NUL = "free of NUL characters"
_ID = Field("id", FieldType.UUID)
_INT_BOUND = 2**63  # str() of a much larger int may refuse (sys.int_max_str_digits): left to the converter
_is_not_none = partial(operator.is_not, None)

# A check is cheap per value when C-level passes over a column (map of a str method or a pattern's
# fullmatch, no Python call per value) prove every value good; only a column they cannot clear (a value that
# fails, or is not text: TypeError) is judged value by value, by the check's own predicate.
ColumnTest = Callable[[list[Any]], bool]


def _no_nul(texts: list[Any]) -> bool:
    return not any(map(str.count, texts, repeat("\x00")))


def _no_blank(texts: list[Any]) -> bool:
    return all(map(str.strip, texts))


def _matching(pattern: str) -> ColumnTest:
    fullmatch = re.compile(pattern).fullmatch
    return lambda texts: all(map(fullmatch, texts))


def _at_once(test: ColumnTest, values: list[Any]) -> bool:
    """Whether `test` clears the whole column: every value text, and good."""
    try:
        return test(values)
    except TypeError:  # a value that is not text
        return False


# Values already in their type's canonical form, known without the converter: it would return each of them
# unchanged, so a type check passes them and a record keeps them as they are. Most values a store gives are.
# Text: text without NUL holding more than white space; a lower-case uuid; an ASCII, lower-case e-mail
# without white space and with a dotted domain.
_CANONICAL_TEXTS: dict[FieldType, ColumnTest] = {
    FieldType.TEXT: lambda texts: _no_nul(texts) and _no_blank(texts),
    FieldType.UUID: _matching(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    FieldType.EMAIL: _matching(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+"),
}
_CANONICAL_VALUES: dict[FieldType, Callable[[Any], bool]] = {
    FieldType.INTEGER: lambda v: type(v) is int and -_INT_BOUND < v < _INT_BOUND,
    FieldType.BOOLEAN: lambda v: type(v) is bool,
}


def _already_canonical(ftype: FieldType) -> Callable[[Any], bool]:
    """The per-value form of the above."""
    test = _CANONICAL_TEXTS.get(ftype)
    if test is not None:
        return lambda v: type(v) is str and test([v])
    return _CANONICAL_VALUES.get(ftype, lambda v: False)


def _check(name: str, column_test: ColumnTest | None, value_test: Callable[[Any], bool]) -> pa.Check:
    """A vectorised check (a boolean per value, so pandera reports each failing value with its index); a
    missing value is not checked (ignore_na)."""
    def check(values: pd.Series) -> pd.Series:
        if column_test is not None and _at_once(column_test, values.tolist()):
            return pd.Series(True, index=values.index)
        return values.map(value_test)

    return pa.Check(check, ignore_na=True, name=name, error=name)


_NO_NUL_CHECK = _check(_NO_NUL, _no_nul, lambda v: not (isinstance(v, str) and "\x00" in v))
_NOT_EMPTY_CHECK = _check(_NOT_EMPTY, _no_blank, lambda v: not (isinstance(v, str) and v.strip() == ""))


def _type_check(f: Field) -> pa.Check:
    canonical = _already_canonical(f.type)

    def convertible(value: Any) -> bool:
        if canonical(value):
            return True
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
    return _check(label, _CANONICAL_TEXTS.get(f.type), convertible)


def _carried(entity: Entity, fields: tuple[str, ...] | None) -> tuple[Field, ...]:
    """The entity's fields a store carries (every field when None), in the entity's order."""
    return entity.fields if fields is None else tuple(f for f in entity.fields if f.name in fields)


@cache
def schema_for(entity: Entity, fields: tuple[str, ...] | None = None) -> pa.DataFrameSchema:
    """The entity's contract: id and every field present, required fields not missing, values typed.

    `fields`: the fields a store carries; a field it does not carry is not part of its contract."""
    columns = {"id": pa.Column(object, checks=[_type_check(_ID), _NO_NUL_CHECK], nullable=False)}
    for f in _carried(entity, fields):
        # Any value has a text form (a NUL has its own check): a text field's type check could never fail, and
        # per value it was most of a page's validation.
        checks = [_NO_NUL_CHECK] if f.type is FieldType.TEXT else [_type_check(f), _NO_NUL_CHECK]
        if f.required:
            checks.append(_NOT_EMPTY_CHECK)
        if f.type is FieldType.INTEGER:
            checks.append(_check("non-negative", None, _non_negative))
        columns[f.name] = pa.Column(object, checks=checks, nullable=not f.required, required=True)
    # Not strict: stores keep bookkeeping columns of their own (sync_version, updated_at) beside the contract.
    return pa.DataFrameSchema(columns, strict=False, name=entity.name)


def _non_negative(value: Any) -> bool:
    if _CANONICAL_VALUES[FieldType.INTEGER](value):
        return bool(value >= 0)
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


def _columns(entity: Entity, rows: list[dict[str, Any]], fields: tuple[str, ...] | None
             ) -> dict[str, list[Any]]:
    """The rows' values column by column: the id and the carried fields, None where a row lacks one."""
    return {c: [row.get(c) for row in rows] for c in ("id", *(f.name for f in _carried(entity, fields)))}


def frame_for(entity: Entity, rows: list[dict[str, Any]], fields: tuple[str, ...] | None = None
              ) -> pd.DataFrame:
    return _frame(_columns(entity, rows, fields))


def _frame(columns: dict[str, list[Any]]) -> pd.DataFrame:
    # From object arrays, each value as it is: pandas' own conversion of lists costs more than the checks.
    return pd.DataFrame({c: np.fromiter(v, dtype=object, count=len(v)) for c, v in columns.items()},
                        dtype=object)


def _canonical_column(f: Field, values: list[Any]) -> list[Any]:
    """`canonical_value` of each of a column's valid values, those already canonical kept as they are."""
    test = _CANONICAL_TEXTS.get(f.type)
    if test is not None and _at_once(test, list(filter(_is_not_none, values))):
        return values
    canonical = _already_canonical(f.type)
    return [v if v is None or canonical(v) else canonical_value(f.type, v, f.choices) for v in values]


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
    columns = _columns(entity, rows, fields)
    try:
        schema_for(entity, fields).validate(_frame(columns), lazy=True)
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
    rejected = [Rejected(i, rows[i], "; ".join(dict.fromkeys(reasons[i])), failures[i])
                for i in sorted(reasons)]
    # The valid rows' canonical records (`canonical_record` with the id), column by column.
    kept = [i for i in range(len(rows)) if i not in reasons]
    record_fields = (*_carried(entity, fields), _ID)
    values = [_canonical_column(f, [columns[f.name][i] for i in kept] if reasons else columns[f.name])
              for f in record_fields]
    names = [f.name for f in record_fields]
    valid = [(i, dict(zip(names, record))) for i, record in zip(kept, zip(*values))]
    return ValidationResult(valid, rejected)
