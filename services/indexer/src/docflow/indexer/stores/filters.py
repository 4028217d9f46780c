"""Search filters inside the stores: one normalised filter, the same answers on both backends.

The gateway hands the indexer a filter already checked and normalised by
`docflow.shared.search_filter.parse_filter`: {"$and": [...]}, {"$or": [...]} or
{field: {op: value}} with op in $eq $ne $in $nin $gt $gte $lt $lte $exists, where a
field is a built-in (`BUILTIN_FILTER_FIELDS`) or a top-level metadata key. The
compilers here must still be safe on anything of that shape: a value never reaches
SQL except as an escaped literal, and a field name never becomes a column name.

Semantics (Pinecone's, which the Pinecone double's evaluator follows and the parity
tests pin): $eq on a list of strings means "contains"; $ne/$nin are the negations
of $eq/$in, so a document without the field passes them; $gt/$gte/$lt/$lte compare
numbers only (a bool is not a number, and a string never compares); a bool equals
only a bool, and 3 equals 3.0. Built-in names win over metadata keys of the same
name, because user metadata lives under its own names in both stores.

How each store holds the attributes:
- LanceDB: built-ins are columns; metadata becomes `meta_terms`, a list of JSON
  tokens `["key", value]` (one per scalar, one per list element, and `["key"]` for
  presence; ASCII-only, numbers as floats), so equality, membership and existence are
  `array_has` on escaped string literals; and `meta_numbers`, a JSON object of the
  numeric values only, so `json_get_float` never meets a string (it raises on one).
- Pinecone: built-ins under their own names, metadata keys under `m:` + key (no
  clash with `text`, `version`, ...), translated by `pinecone_filter`.
"""

import json
import math
from typing import Any

from docflow.shared.search import BUILTIN_FILTER_FIELDS

STRING_COLUMNS = ("document_id", "filename", "content_type")
NUMBER_COLUMNS = ("created_at",)
PINECONE_METADATA_PREFIX = "m:"
_RANGE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_FALSE, _TRUE = "FALSE", "TRUE"


class UnsupportedFilter(ValueError):
    """A filter not of the normalised shape (search_filter should have refused it)."""


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _canonical(value: Any) -> Any:
    if is_number(value):
        return float(value) or 0.0  # 3 == 3.0, and -0.0 == 0.0
    return value


def metadata_token(key: str, value: Any) -> str:
    """`["key", value]`, ASCII-escaped: equal values give equal tokens, whatever their spelling."""
    return json.dumps([key, _canonical(value)], ensure_ascii=True)


def presence_token(key: str) -> str:
    return json.dumps([key], ensure_ascii=True)


def metadata_terms(metadata: dict[str, Any]) -> list[str]:
    """The `meta_terms` of filterable metadata: presence, then one token per value."""
    found: list[str] = []
    for key, value in metadata.items():
        found.append(presence_token(key))
        for item in value if isinstance(value, list) else [value]:
            found.append(metadata_token(key, item))
    return found


def metadata_numbers(metadata: dict[str, Any]) -> str:
    """The `meta_numbers` JSON object: numeric values only, as floats."""
    return json.dumps({key: float(value) for key, value in metadata.items() if is_number(value)})


def sql_string(value: str) -> str:
    """A SQL string literal: single quotes doubled, so a value can never end the literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_number(value: float) -> str:
    if not is_number(value):
        raise UnsupportedFilter(f"not a finite number: {value!r}")
    return repr(float(value))


def _condition(field: str, spec: Any) -> tuple[str, Any]:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UnsupportedFilter(f"condition on {field!r} must be one {{operator: value}}")
    ((op, value),) = spec.items()
    return op, value


def lancedb_where(filter_: dict[str, Any] | None) -> str | None:
    """The filter as a LanceDB SQL predicate, or None for no filter."""
    if not filter_:
        return None
    return _sql(filter_)


def _sql(node: Any) -> str:
    if not isinstance(node, dict) or len(node) != 1:
        raise UnsupportedFilter("a filter node is one {field: condition} or {$and|$or: [...]}")
    ((key, value),) = node.items()
    if key in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise UnsupportedFilter(f"{key} takes a non-empty list")
        joiner = " AND " if key == "$and" else " OR "
        return "(" + joiner.join(_sql(child) for child in value) + ")"
    if not isinstance(key, str) or key.startswith("$"):
        raise UnsupportedFilter(f"not a field name: {key!r}")
    op, operand = _condition(key, value)
    if key in STRING_COLUMNS:
        return _string_column(key, op, operand)
    if key in NUMBER_COLUMNS:
        return _number_column(key, op, operand)
    return _metadata(key, op, operand)


def _values(op: str, operand: Any) -> list[Any]:
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise UnsupportedFilter(f"{op} takes a list")
        return operand
    return [operand]


def _negated(op: str) -> bool:
    return op in ("$ne", "$nin")


def _string_column(column: str, op: str, operand: Any) -> str:
    if op == "$exists":
        return _TRUE if operand else _FALSE  # every chunk has its built-ins
    if op in _RANGE_SQL:
        return _FALSE  # ranges compare numbers only
    if op not in ("$eq", "$ne", "$in", "$nin"):
        raise UnsupportedFilter(f"unknown operator {op!r}")
    strings = [value for value in _values(op, operand) if isinstance(value, str)]
    if not strings:  # nothing of the column's type can be equal
        return _TRUE if _negated(op) else _FALSE
    listed = ", ".join(sql_string(value) for value in strings)
    return f"{column} {'NOT IN' if _negated(op) else 'IN'} ({listed})"


def _number_column(column: str, op: str, operand: Any) -> str:
    if op == "$exists":
        return _TRUE if operand else _FALSE
    if op in _RANGE_SQL:
        return f"{column} {_RANGE_SQL[op]} {sql_number(operand)}" if is_number(operand) else _FALSE
    if op not in ("$eq", "$ne", "$in", "$nin"):
        raise UnsupportedFilter(f"unknown operator {op!r}")
    numbers = [value for value in _values(op, operand) if is_number(value)]
    if not numbers:
        return _TRUE if _negated(op) else _FALSE
    listed = ", ".join(sql_number(value) for value in numbers)
    return f"{column} {'NOT IN' if _negated(op) else 'IN'} ({listed})"


def _metadata(key: str, op: str, operand: Any) -> str:
    if op == "$exists":
        present = f"array_has(meta_terms, {sql_string(presence_token(key))})"
        return present if operand else f"NOT {present}"
    if op in _RANGE_SQL:
        if not is_number(operand):
            return _FALSE
        # NULL (no such numeric key) never passes; no operator of the dialect negates it.
        return f"json_get_float(meta_numbers, {sql_string(key)}) {_RANGE_SQL[op]} {sql_number(operand)}"
    if op not in ("$eq", "$ne", "$in", "$nin"):
        raise UnsupportedFilter(f"unknown operator {op!r}")
    wanted = [value for value in _values(op, operand)
              if isinstance(value, str | bool) or is_number(value)]
    if not wanted:
        return _TRUE if _negated(op) else _FALSE
    tokens = ", ".join(sql_string(metadata_token(key, value)) for value in wanted)
    test = (f"array_has(meta_terms, {tokens})" if len(wanted) == 1
            else f"array_has_any(meta_terms, make_array({tokens}))")
    return f"NOT {test}" if _negated(op) else test


def pinecone_filter(filter_: dict[str, Any] | None) -> dict[str, Any] | None:
    """The filter with metadata keys renamed to where the Pinecone store keeps them."""
    if not filter_:
        return None
    return _renamed(filter_)


def _renamed(node: Any) -> Any:
    if not isinstance(node, dict) or len(node) != 1:
        raise UnsupportedFilter("a filter node is one {field: condition} or {$and|$or: [...]}")
    ((key, value),) = node.items()
    if key in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise UnsupportedFilter(f"{key} takes a non-empty list")
        return {key: [_renamed(child) for child in value]}
    if not isinstance(key, str) or key.startswith("$"):
        raise UnsupportedFilter(f"not a field name: {key!r}")
    _condition(key, value)
    return {pinecone_field(key): value}


def pinecone_field(field: str) -> str:
    return field if field in BUILTIN_FILTER_FIELDS else PINECONE_METADATA_PREFIX + field
