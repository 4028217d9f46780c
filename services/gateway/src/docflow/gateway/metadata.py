"""A document's metadata: checked once, at the door, so no stored record can break a read.

Metadata arrives as a JSON object (the upload's `metadata` form field, or PATCH's
body). Everything stored must be renderable again as JSON by every later reader (the
document's record, the tenant's listing, every search hit), so refused with the reason
(the gateway's 422) are: lone surrogates (they cannot be encoded as UTF-8: one in an
accepted upload answered 500 for the tenant's every listing until it was deleted),
nesting deeper than MAX_DEPTH (a record 256 levels deep broke the listing the same way;
~990 levels broke the parser), NaN and Infinity (JSON has no such numbers; they became
null silently), duplicate keys (the last one won silently), empty or very long keys,
and more than MAX_METADATA_BYTES in all.
"""

import json
import math
from typing import Any

from docflow.gateway.json_bodies import StrictJsonError, strict_json_loads

MAX_DEPTH = 10  # the top-level object is level 1
MAX_KEY_CHARS = 256
MAX_METADATA_BYTES = 64 * 1024  # serialised as UTF-8 JSON


class MetadataError(ValueError):
    """Not acceptable metadata; the message says why."""


def parse_metadata_json(raw: bytes | str) -> dict[str, Any]:
    """The upload's metadata field, parsed strictly and validated."""
    if len(raw) > MAX_METADATA_BYTES:
        raise MetadataError(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    try:
        value = strict_json_loads(raw, what="metadata")
    except StrictJsonError as exc:
        raise MetadataError(str(exc)) from None
    except RecursionError:
        raise MetadataError(f"metadata nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise MetadataError("metadata is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise MetadataError(f"metadata must be a JSON object: not valid JSON: {exc}") from None
    return validated_metadata(value)


def validated_metadata(value: Any) -> dict[str, Any]:
    """`value` itself if it is acceptable metadata, else MetadataError with the reason."""
    if not isinstance(value, dict):
        raise MetadataError(f"metadata must be a JSON object, not {type(value).__name__}")
    # Iterative, so a deeply nested value is refused without recursing into it.
    pending: list[tuple[Any, int, str]] = [(value, 1, "metadata")]
    while pending:
        node, depth, path = pending.pop()
        if isinstance(node, dict | list) and depth > MAX_DEPTH:
            raise MetadataError(f"metadata nests deeper than {MAX_DEPTH} levels (at {path})")
        if isinstance(node, dict):
            for key, child in node.items():
                _check_key(key, path)
                pending.append((child, depth + 1, f"{path}.{key}"))
        elif isinstance(node, list):
            pending.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(node))
        elif isinstance(node, str):
            _check_text(node, path)
        elif isinstance(node, float) and not math.isfinite(node):
            raise MetadataError(f"{path} is {node}: JSON has no such number")
        elif node is not None and not isinstance(node, bool | int | float):
            raise MetadataError(f"{path} is a {type(node).__name__}, which JSON cannot hold")
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise MetadataError(f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES}")
    return value


def _check_key(key: Any, path: str) -> None:
    if not isinstance(key, str) or not key:
        raise MetadataError(f"keys in {path} must be non-empty strings")
    if len(key) > MAX_KEY_CHARS:
        raise MetadataError(f"a key in {path} is longer than {MAX_KEY_CHARS} characters")
    _check_text(key, f"a key in {path}")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MetadataError(f"{where} is not valid Unicode (it holds a lone surrogate)") from None
