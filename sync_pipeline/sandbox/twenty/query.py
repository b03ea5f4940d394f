"""List-query parameters of §4: the filter grammar (§4.3), order_by, limit, depth and cursors.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .schema import (
    ARRAY, BOOLEAN, DATE_TIME, NUMBER, UUID, ObjectDef, field_type_at, get_path, is_uuid, parse_timestamp,
)

OPERATORS = (
    "eq", "neq", "in", "containsAny", "is", "gt", "gte", "lt", "lte",
    "startsWith", "endsWith", "like", "ilike",
)
DIRECTIONS = ("AscNullsFirst", "AscNullsLast", "DescNullsFirst", "DescNullsLast")
_LEAF = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\[([^\]]*)\]:(.*)$", re.S)
_CONJUNCTION = re.compile(r"^(and|or|not)\((.*)\)$", re.S)
_QUOTES = ("'", '"')


# --- filter AST -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    path: str
    operator: str
    value: str | list[str]


@dataclass(frozen=True)
class Conjunction:
    kind: str  # and | or | not
    items: tuple[Leaf | Conjunction, ...]


FilterNode = Leaf | Conjunction


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside (...), [...] and quotes (parse-filter-content)."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    for index, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in _QUOTES:
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _check_brackets(text: str) -> None:
    balance = 0
    quote: str | None = None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in _QUOTES:
            quote = char
        elif char == "(":
            balance += 1
        elif char == ")":
            balance -= 1
    if balance > 0:
        raise bad_request(f"'filter' invalid. {balance} close bracket is missing in the query")
    if balance < 0:
        raise bad_request(f"'filter' invalid. {-balance} open bracket is missing in the query")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] in _QUOTES and value[-1] == value[0]:
        return value[1:-1]
    return value


def _parse_leaf(text: str) -> Leaf:
    match = _LEAF.match(text)
    if match is None:
        raise bad_request(f"'filter' invalid for '{text}'. eg: price[gte]:10")
    path, operator, raw_value = match.groups()
    if operator not in OPERATORS:
        raise bad_request(
            f"'filter' invalid for '{text}', comparator {operator} not in {', '.join(OPERATORS)}"
        )
    raw_value = raw_value.strip()
    if operator in ("in", "containsAny"):
        if not (raw_value.startswith("[") and raw_value.endswith("]")):
            raise bad_request(
                f"'filter' invalid for '{operator}' operator. Received '{raw_value}' but array value "
                "expected eg: 'field[in]:[value_1,value_2]'"
            )
        inner = raw_value[1:-1].strip()
        return Leaf(path, operator, [_unquote(item) for item in _split_top_level(inner)] if inner else [])
    return Leaf(path, operator, _unquote(raw_value))


def _parse_item(text: str) -> FilterNode:
    match = _CONJUNCTION.match(text)
    if match is None:
        return _parse_leaf(text)
    kind, inner = match.groups()
    items = tuple(_parse_item(part) for part in _split_top_level(inner))
    if kind == "not" and len(items) != 1:
        raise bad_request(
            "'filter' invalid. 'not' conjunction should contain only 1 condition. eg: not(field[eq]:1)"
        )
    return Conjunction(kind, items)


def parse_filter(text: str) -> FilterNode:
    """Parse the §4.3 grammar; several top-level items mean ``and(...)``."""
    _check_brackets(text)
    items = tuple(_parse_item(part) for part in _split_top_level(text.strip()))
    return items[0] if len(items) == 1 else Conjunction("and", items)


def mentions_deleted_at(node: FilterNode | None) -> bool:
    """§4.4: a ``deletedAt`` term anywhere switches the query to "with deleted"."""
    if node is None:
        return False
    if isinstance(node, Leaf):
        return node.path.split(".")[0] == "deletedAt"
    return any(mentions_deleted_at(item) for item in node.items)


# --- filter evaluation (SQL three-valued logic: None = unknown) ---------------------------------------

Predicate = Callable[[dict[str, Any]], bool | None]


def _coerce_filter_value(value: str, value_type: str, path: str) -> Any:
    try:
        if value_type == DATE_TIME:
            return parse_timestamp(value)
        if value_type == NUMBER:
            return float(value)
    except ValueError:
        message = f"'filter' invalid for '{path}': '{value}' is not a valid {value_type.lower()}"
        raise bad_request(message) from None
    if value_type == BOOLEAN:
        if value.lower() not in ("true", "false"):
            raise bad_request(f"'filter' invalid for '{path}': '{value}' is not a valid boolean")
        return value.lower() == "true"
    if value_type == UUID and not is_uuid(value):
        raise bad_request(f"'{value}' is not a valid UUID")
    return value.lower() if value_type == UUID else value


def _stored(value: Any, value_type: str) -> Any:
    if value is None:
        return None
    if value_type == DATE_TIME:
        return parse_timestamp(value)
    if value_type == NUMBER:
        return float(value)
    return value


def _like(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, re.S | (re.I if ignore_case else 0))


def _leaf_predicate(obj: ObjectDef, leaf: Leaf) -> Predicate:
    value_type = field_type_at(obj, leaf.path)
    if value_type is None:
        raise bad_request(f"field '{leaf.path}' does not exist in '{obj.singular}' object")
    if "." not in leaf.path and obj.fields[leaf.path].is_composite:
        raise bad_request(
            f"'filter' invalid for '{leaf.path}': filter composite fields by sub-field, "
            "eg: emails.primaryEmail"
        )
    path, operator = leaf.path, leaf.operator

    if operator == "is":
        wanted = str(leaf.value).upper()
        if wanted not in ("NULL", "NOT_NULL"):
            raise bad_request(
                f"'filter' invalid for '{path}[is]:{leaf.value}'. 'is' accepts NULL or NOT_NULL"
            )
        return lambda record: (get_path(record, path) is None) == (wanted == "NULL")

    if operator in ("in", "containsAny"):
        element_type = value_type if operator == "in" else "TEXT"
        options = [_coerce_filter_value(v, element_type, path) for v in leaf.value]

        def member(record: dict[str, Any]) -> bool | None:
            stored = _stored(get_path(record, path), value_type if operator == "in" else ARRAY)
            if stored is None:
                return None
            if operator == "containsAny":
                return bool(set(map(str, stored)) & set(map(str, options)))
            return stored in options

        return member

    if operator in ("startsWith", "endsWith"):
        affix = str(leaf.value)

        def has_affix(record: dict[str, Any]) -> bool | None:
            stored = get_path(record, path)
            if stored is None:
                return None
            return str(stored).startswith(affix) if operator == "startsWith" else str(stored).endswith(affix)

        return has_affix

    if operator in ("like", "ilike"):
        compiled = _like(str(leaf.value), ignore_case=operator == "ilike")

        def matches(record: dict[str, Any]) -> bool | None:
            stored = get_path(record, path)
            return None if stored is None else compiled.fullmatch(str(stored)) is not None

        return matches

    operand = _coerce_filter_value(str(leaf.value), value_type, path)
    compare: Callable[[Any, Any], bool] = {
        "eq": lambda a, b: a == b,
        "neq": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }[operator]

    def compared(record: dict[str, Any]) -> bool | None:
        stored = _stored(get_path(record, path), value_type)
        if stored is None:
            return None
        try:
            return compare(stored, operand)
        except TypeError:
            return None

    return compared


def compile_filter(obj: ObjectDef, node: FilterNode) -> Predicate:
    """Turn the AST into a predicate; unknown paths and bad values raise 400 now, not per row."""
    if isinstance(node, Leaf):
        return _leaf_predicate(obj, node)
    children = [compile_filter(obj, item) for item in node.items]
    if node.kind == "not":
        child = children[0]

        def negated(record: dict[str, Any]) -> bool | None:
            result = child(record)
            return None if result is None else not result

        return negated

    def combined(record: dict[str, Any]) -> bool | None:
        results = [child(record) for child in children]
        if node.kind == "and":
            return False if False in results else None if None in results else True
        return True if True in results else None if None in results else False

    return combined


# --- other list parameters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderKey:
    path: str
    direction: str

    @property
    def ascending(self) -> bool:
        return self.direction.startswith("Asc")

    @property
    def nulls_first(self) -> bool:
        return self.direction.endswith("NullsFirst")


def parse_order_by(obj: ObjectDef, text: str | None) -> list[OrderKey]:
    """``field[Dir],field2`` plus the ``id`` tie-breaker unless ``id`` is ordered already (§4.1)."""
    keys: list[OrderKey] = []
    for item in _split_top_level(text) if text else []:
        if not item:
            continue
        match = re.fullmatch(r"([A-Za-z_][\w.]*)(?:\[([^\]]*)\])?", item)
        if match is None:
            raise bad_request(f"'order_by' invalid for '{item}'. eg: ?order_by=field_1[AscNullsFirst]")
        path, direction = match.group(1), match.group(2) or "AscNullsFirst"
        if direction not in DIRECTIONS:
            raise bad_request(
                f"'order_by' direction '{direction}' invalid. Allowed values are 'AscNullsFirst', "
                "'AscNullsLast', 'DescNullsFirst', 'DescNullsLast'. eg: "
                "?order_by=field_1[AscNullsFirst],field_2[DescNullsLast],field_3"
            )
        value_type = field_type_at(obj, path)
        if value_type is None:
            raise bad_request(f"field '{path}' does not exist in '{obj.singular}' object")
        if "." not in path and obj.fields[path].is_composite:
            raise bad_request(
                f"'order_by' invalid for '{path}': order composite fields by sub-field, eg: name.lastName"
            )
        keys.append(OrderKey(path, direction))
    if not any(key.path == "id" for key in keys):
        keys.append(OrderKey("id", "AscNullsFirst"))
    return keys


def compare_keys(left: tuple[Any, ...], right: tuple[Any, ...], order: list[OrderKey]) -> int:
    """Total order used both for sorting and for keyset cursors, so pages never overlap."""
    for a, b, key in zip(left, right, order):
        if a == b:
            continue
        if a is None or b is None:
            first_is_null = a is None
            return (-1 if key.nulls_first else 1) if first_is_null else (1 if key.nulls_first else -1)
        try:
            result = -1 if a < b else 1
        except TypeError:
            result = -1 if str(a) < str(b) else 1
        return result if key.ascending else -result
    return 0


def sort_values(record: dict[str, Any], order: list[OrderKey]) -> tuple[Any, ...]:
    return tuple(get_path(record, key.path) for key in order)


def encode_cursor(record: dict[str, Any], order: list[OrderKey]) -> str:
    """base64 of JSON ``{order-by values..., "id"}`` (cursors.util encodeCursor, §4.2)."""
    payload: dict[str, Any] = {}
    for key in order:
        head, _, sub = key.path.partition(".")
        if sub:
            payload.setdefault(head, {})[sub] = get_path(record, key.path)
        else:
            payload[head] = record.get(head)
    payload["id"] = record["id"]
    return base64.b64encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()).decode()


def decode_cursor(cursor: str, order: list[OrderKey]) -> tuple[Any, ...]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True))
        if not isinstance(payload, dict) or "id" not in payload:
            raise ValueError(cursor)
        values = []
        for key in order:
            head, _, sub = key.path.partition(".")
            if head not in payload or (sub and not isinstance(payload[head], dict)):
                raise ValueError(cursor)
            values.append(payload[head][sub] if sub else payload[head])
        return tuple(values)
    except (ValueError, binascii.Error, KeyError, UnicodeDecodeError):
        raise bad_request(f"Invalid cursor: {cursor}") from None


def parse_limit(text: str | None, page_size_max: int, default: int = 60) -> int:
    """Default 60; values above the maximum are silently clamped (§4.1)."""
    if text is None:
        return min(default, page_size_max)
    if not re.fullmatch(r"\d+", text.strip()):
        raise bad_request(f"limit '{text}' is invalid. Should be an integer")
    return min(int(text), page_size_max)


def parse_depth(text: str | None) -> int:
    if text is None:
        return 0
    if text not in ("0", "1"):
        raise bad_request(f"'depth={text}' parameter invalid. Allowed values are 0, 1")
    return int(text)


def parse_fields(obj: ObjectDef, text: str | None) -> list[str] | None:
    """2026 ``fields`` parameter: field names or many-to-one / one-to-many relation names."""
    if not text:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in obj.fields and name not in obj.many_to_one and name not in obj.one_to_many:
            raise bad_request(f"field '{name}' does not exist in '{obj.singular}' object")
    return names


def is_true(text: str | None) -> bool:
    """``soft_delete`` / ``upsert``: anything but the string ``true`` is false (§4.1)."""
    return text == "true"
