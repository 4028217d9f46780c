"""Search filters: Pinecone's metadata filter dialect, checked and normalised once.

The gateway parses a request's filter with `parse_filter` (a `FilterError` is its 422),
and both backends receive the normalised form: every node is exactly one of

    {"$and": [node, ...]}   {"$or": [node, ...]}   {field: {operator: value}}

with the operators $eq $ne $in $nin $gt $gte $lt $lte $exists. The implicit forms are
made explicit ({"year": 2020} is {"year": {"$eq": 2020}}; several fields, or several
operators on one field, are an $and), and `created_at` values become epoch seconds.

`matches` is the reference evaluator, with Pinecone's semantics: a field that is
missing fails every operator but $ne, $nin and `$exists: false`; a list value (of
strings) matches $eq/$in when any element does and $ne/$nin when none does; ranges
compare numbers only. The LanceDB translation (the indexer's stores/filters.py) and the
Pinecone double agree with it, which the indexer's tests check side by side.
"""

import math
from datetime import UTC, datetime
from typing import Any

from docflow.shared.search import BUILTIN_FILTER_FIELDS

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
MEMBERSHIP = ("$in", "$nin")
OPERATORS = (*COMPARISONS, *MEMBERSHIP, "$exists")
RANGES = ("$gt", "$gte", "$lt", "$lte")
MAX_DEPTH = 8
MAX_LIST_VALUES = 1000  # in one $in/$nin (Pinecone's own limit is 10,000 values overall)
MAX_CONDITIONS = 256
MAX_FIELD_CHARS = 256
MAX_STRING_CHARS = 1024
DATE_FIELD = "created_at"


class FilterError(ValueError):
    """The filter is malformed; the message says where and why (the gateway's 422)."""


def parse_filter(raw: Any) -> dict[str, Any]:
    """The filter in normalised form, or FilterError."""
    if not isinstance(raw, dict) or not raw:
        raise FilterError("filter must be a non-empty JSON object, e.g. {\"year\": {\"$gte\": 2020}}")
    counter = [0]
    return _node(raw, depth=1, counter=counter)


def _node(raw: Any, depth: int, counter: list[int]) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise FilterError(f"filter nests deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, dict) or not raw:
        raise FilterError("every part of a filter must be a non-empty JSON object")
    parts: list[dict[str, Any]] = []
    for key, value in raw.items():
        _check_text(key, "a filter key")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} takes a non-empty list of filters")
            parts.append({key: [_node(child, depth + 1, counter) for child in value]})
        elif key.startswith("$"):
            raise FilterError(f"unknown operator {key!r} at the top of a filter (use $and or $or, "
                              f"or {{field: {{operator: value}}}})")
        else:
            parts.extend(_conditions(key, value, counter))
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _conditions(field: str, spec: Any, counter: list[int]) -> list[dict[str, Any]]:
    if len(field) > MAX_FIELD_CHARS:
        raise FilterError(f"field name longer than {MAX_FIELD_CHARS} characters")
    if not isinstance(spec, dict):
        spec = {"$eq": spec}  # {"year": 2020}
    if not spec:
        raise FilterError(f"condition on {field!r} is empty")
    conditions = []
    for op, value in spec.items():
        counter[0] += 1
        if counter[0] > MAX_CONDITIONS:
            raise FilterError(f"filter has more than {MAX_CONDITIONS} conditions")
        if op not in OPERATORS:
            raise FilterError(f"unknown operator {op!r} on {field!r}; use one of {', '.join(OPERATORS)}")
        conditions.append({field: {op: _operand(field, op, value)}})
    return conditions


def _operand(field: str, op: str, value: Any) -> Any:
    if op == "$exists":
        if not isinstance(value, bool):
            raise FilterError(f"$exists on {field!r} takes true or false")
        return value
    if op in MEMBERSHIP:
        if not isinstance(value, list) or not value:
            raise FilterError(f"{op} on {field!r} takes a non-empty list")
        if len(value) > MAX_LIST_VALUES:
            raise FilterError(f"{op} on {field!r} lists more than {MAX_LIST_VALUES} values")
        return [_scalar(field, op, item) for item in value]
    scalar = _scalar(field, op, value)
    if op in RANGES and not _is_number(scalar):
        raise FilterError(f"{op} on {field!r} compares numbers (or dates, for {DATE_FIELD}), not {value!r}")
    return scalar


def _scalar(field: str, op: str, value: Any) -> str | int | float | bool:
    if field == DATE_FIELD:
        return _epoch_seconds(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise FilterError(f"{op} on {field!r}: numbers must be finite")
        return value
    if isinstance(value, str):
        _check_text(value, f"a value for {field!r}")
        if len(value) > MAX_STRING_CHARS:
            raise FilterError(f"a value for {field!r} is longer than {MAX_STRING_CHARS} characters")
        return value
    raise FilterError(f"{op} on {field!r} takes strings, numbers or booleans, not {type(value).__name__}")


def _epoch_seconds(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise FilterError(f"{DATE_FIELD} takes an ISO-8601 date and time or epoch seconds, not {value!r}")


def _check_text(text: Any, what: str) -> None:
    if not isinstance(text, str):
        raise FilterError(f"{what} must be a string")
    if "\x00" in text:
        raise FilterError(f"{what} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(f"{what} is not valid Unicode (a lone surrogate)") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_builtin(field: str) -> bool:
    return field in BUILTIN_FILTER_FIELDS


# --- the reference evaluator ---------------------------------------------------------

def matches(filter_: dict[str, Any] | None, attributes: dict[str, Any]) -> bool:
    """Whether a chunk whose document has these attributes (built-ins and metadata keys,
    side by side) passes the normalised filter."""
    if not filter_:
        return True
    ((key, value),) = filter_.items()
    if key == "$and":
        return all(matches(child, attributes) for child in value)
    if key == "$or":
        return any(matches(child, attributes) for child in value)
    ((op, operand),) = value.items()
    present = key in attributes and attributes[key] is not None
    if op == "$exists":
        return present is operand
    if not present:
        return op in ("$ne", "$nin")
    stored = attributes[key]
    values = stored if isinstance(stored, list) else [stored]
    if op == "$eq":
        return any(_equal(item, operand) for item in values)
    if op == "$ne":
        return not any(_equal(item, operand) for item in values)
    if op == "$in":
        return any(_equal(item, wanted) for item in values for wanted in operand)
    if op == "$nin":
        return not any(_equal(item, wanted) for item in values for wanted in operand)
    return any(_is_number(item) and _compare(item, op, operand) for item in values)


def _equal(stored: Any, wanted: Any) -> bool:
    # 3 == 3.0, but True is not 1 and "3" is not 3: types must agree, as in Pinecone.
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if _is_number(stored) and _is_number(wanted):
        return float(stored) == float(wanted)
    return type(stored) is type(wanted) and stored == wanted


def _compare(stored: float, op: str, operand: float) -> bool:
    return {"$gt": stored > operand, "$gte": stored >= operand,
            "$lt": stored < operand, "$lte": stored <= operand}[op]
