"""Whether one object of a results file may be read: strict JSON decoding and the shipped schema.

``decode`` turns a line (or a whole ``run --json`` document) into Python objects and refuses what json.loads
would take silently: a key given twice, NaN and Infinity, integers of more than 20 digits and numbers beyond
±2^64 (no counter or rate comes near; a sum of such samples would overflow). ``problem`` checks a decoded
object against ``shmrss/schema/results.schema.json`` (a result, or a sweep line without one) and names the
first field that does not fit, so a reader can skip the object with one line instead of failing on it later.
``version_problem`` judges a document's ``schema_version``.

The schema is checked here with a small validator of the keywords the schema uses (type, const, enum,
required, properties, additionalProperties, items, minimum, maximum, exclusiveMinimum, oneOf, $ref), because
jsonschema is only a test dependency; the tests check the shipped files with jsonschema too.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

SCHEMA_VERSION = 1
MAX_ABS = float(2**64)
MAX_INT_DIGITS = 20


class Refused(ValueError):
    """An object that decodes as JSON but that shmrss does not read; the message says why, in a few words."""


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise Refused(f"has the key {json.dumps(twice)[:60]} twice")
    return obj


def _constant(name: str):
    raise Refused(f"holds {name}, which is not a number JSON allows")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise Refused(f"holds an integer of {len(text.lstrip('-'))} digits, beyond ±2^64")
    v = int(text)
    if abs(v) > MAX_ABS:
        raise Refused("holds a number beyond ±2^64")
    return v


def _float(text: str) -> float:
    v = float(text)
    if not abs(v) <= MAX_ABS:  # also inf, from 1e400
        raise Refused("holds a number beyond ±2^64")
    return v


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant, parse_int=_int,
                            parse_float=_float)


def decode(text: str):
    """The JSON value of ``text``; Refused (strictness), json.JSONDecodeError, RecursionError otherwise.
    A refused number is named by its field (decoded again, leniently, to find it)."""
    try:
        return _DECODER.decode(text)
    except Refused as e:
        if "key" in str(e):
            raise
        try:
            where = _bad_number(json.loads(text), "")
        except (ValueError, RecursionError):
            where = None
        raise Refused(f"{where} {e}" if where else str(e)) from None


def _bad_number(v, where: str) -> str | None:
    """The field of the first number ``decode`` refuses in a leniently decoded value."""
    if isinstance(v, dict):
        items = ((f"{where}.{k}" if where else k, x) for k, x in v.items())
    elif isinstance(v, list):
        items = ((f"{where}[{i}]", x) for i, x in enumerate(v))
    else:
        bad = isinstance(v, (int, float)) and not isinstance(v, bool) and not abs(v) <= MAX_ABS
        return (where or "the value") if bad else None
    for w, x in items:
        if (got := _bad_number(x, w)) is not None:
            return got
    return None


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads((Path(__file__).parent / "schema" / "results.schema.json").read_text())


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = schema()["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _type_problem(v, node: dict) -> str | None:
    types = node.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](v) for t in types):
            return f"is {_kind(v)}, not {' or '.join(types)}"
    if "const" in node and v != node["const"]:
        return f"is {json.dumps(v)[:40]}, not {json.dumps(node['const'])}"
    if "enum" in node and v not in node["enum"]:
        return f"is {json.dumps(v)[:40]}, not one of {', '.join(map(json.dumps, node['enum']))}"
    if _TYPES["number"](v):
        if "minimum" in node and v < node["minimum"]:
            return f"is {v}, below {node['minimum']}"
        if "maximum" in node and v > node["maximum"]:
            return f"is {v}, above {node['maximum']}"
        if "exclusiveMinimum" in node and v <= node["exclusiveMinimum"]:
            return f"is {v}, not above {node['exclusiveMinimum']}"
    return None


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _problem(v, node: dict, where: str) -> tuple[str, str] | None:
    """(the field, why) of the first place ``v`` does not fit ``node``, or None."""
    node = _resolve(node)
    why = _type_problem(v, node)
    if why:
        return where or "the object", why
    if isinstance(v, dict):
        for name in node.get("required", ()):
            if name not in v:
                return (f"{where}.{name}" if where else name), "is missing"
        props, extra = node.get("properties", {}), node.get("additionalProperties", True)
        for k, item in v.items():
            sub = props.get(k, extra)
            if sub is False:
                return (f"{where}.{k}" if where else k), "is not allowed"
            if isinstance(sub, dict) and (got := _problem(item, sub, f"{where}.{k}" if where else k)):
                return got
    if isinstance(v, list) and "items" in node:
        for i, item in enumerate(v):
            if got := _problem(item, node["items"], f"{where}[{i}]"):
                return got
    if "oneOf" in node:
        fits = sum(_problem(v, alt, where) is None for alt in node["oneOf"])
        if fits != 1:
            return where or "the object", f"fits {fits} of the schema's {len(node['oneOf'])} alternatives, not one"
    return None


def problem(obj) -> str | None:
    """Why ``obj`` (one line of a results file, or one result of a document) cannot be read, naming the
    field ("params.cpus is a string, not integer"), or None. A result is an object with ``throughput`` or
    ``lifecycle``; an object with only a ``sweep`` member is a point that made no result."""
    if not isinstance(obj, dict):
        return "is not a JSON object"
    if "throughput" in obj or "lifecycle" in obj:
        got = _problem(obj, {"$ref": "#/$defs/result"}, "")
    elif "sweep" in obj:
        got = _problem(obj, {"$ref": "#/$defs/sweep_line"}, "")
    else:
        return "is neither a shmrss result nor a sweep point"
    return None if got is None else f"{got[0]} {got[1]}"


def version_problem(version) -> str | None:
    """Why a document's ``schema_version`` cannot be read by this shmrss, or None."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"schema_version {json.dumps(version)[:40]} is not a results schema version (this shmrss writes 1)"
    if version > SCHEMA_VERSION:
        return (f"was written by a newer shmrss (results schema_version {version}; this one reads up to "
                f"{SCHEMA_VERSION}): upgrade shmrss to read it")
    return None
