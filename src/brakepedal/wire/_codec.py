"""Strict reading and writing of the agent's canonical JSON records.

Minute records and usage reports follow the approach of :mod:`brakepedal.governance.documents`:
one RFC 8785 object with a ``format`` tag and a ``spec_version``, every field present (``null``
where absent), JSON keys equal to the dataclass field names, exactly one byte form. Errors after
the JSON stage name the field's path (``usage_report.busy_ms``) in front of the message.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, NoReturn

from brakepedal.crypto.canonical import MAX_SAFE_INTEGER, canonical_json, require_canonical
from brakepedal.errors import InputError, located
from brakepedal.model.limits import Limits
from brakepedal.model.types import format_utc, parse_utc_timestamp, utc_datetime

__all__ = [
    "SHA256_HEX",
    "SPEC_VERSION",
    "Parse",
    "as_is",
    "check_datetime",
    "check_int",
    "encode",
    "fail",
    "located",
    "read_record",
    "write_record",
]

#: The one spec version the agent's records have.
SPEC_VERSION = 1
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HEADER = frozenset({"format", "spec_version"})

#: Turns a field's JSON value into the value the constructor takes (which checks it further).
Parse = Callable[[object], object]


def fail(reason: str, path: str, message: str) -> NoReturn:
    """Raise an :class:`InputError` whose message starts with ``path``."""
    raise InputError(reason, f"{path}: {message}")


def check_int(
    value: object,
    path: str,
    prefix: str,
    *,
    low: int = 0,
    high: int = MAX_SAFE_INTEGER,
    nullable: bool = False,
    reason: str | None = None,
) -> None:
    """Refuse anything but an int in ``[low, high]`` (or None when ``nullable``)."""
    if type(value) is int and low <= value <= high:  # the common case first
        return
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        fail(f"{prefix}.field_invalid", path, f"expected an integer, got {value!r:.40}")
    if not low <= value <= high:
        fail(reason or f"{prefix}.field_invalid", path, f"{value} is not in [{low}, {high}]")


def check_datetime(value: object, path: str, prefix: str) -> datetime:
    """``value`` as a UTC datetime, or an error naming ``path``."""
    if not isinstance(value, datetime):
        fail(f"{prefix}.field_invalid", path, f"expected a datetime, got {value!r:.40}")
    try:
        return utc_datetime(value)
    except InputError as e:
        raise located(e, path) from e


def canonical_time(prefix: str) -> Parse:
    """A parser for times in the one form :func:`format_utc` writes."""

    # Window boundaries repeat across a fleet (whole minutes), so parsed times are kept: a
    # hit costs a dictionary lookup. Only successes are cached; a refusal is raised each time.
    @functools.lru_cache(maxsize=4096)
    def parse_text(value: str) -> datetime:
        moment = parse_utc_timestamp(value)
        if format_utc(moment) != value:
            raise InputError(
                f"{prefix}.time_not_canonical",
                f"{value!r} is not in the one form YYYY-MM-DDTHH:MM:SS[.ffffff]Z",
            )
        return moment

    def parse(value: object) -> datetime:
        if not isinstance(value, str):
            return parse_utc_timestamp(value)  # refuses it, naming the type
        return parse_text(str(value))

    return parse


def encode(value: object) -> object:
    """The JSON value of a field."""
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str):
        return str(value)  # an Identifier as a plain str
    if isinstance(value, tuple):
        return [encode(item) for item in value]
    return value


def write_record(format_tag: str, fields: Mapping[str, object]) -> bytes:
    """The canonical bytes of a record: header plus every field."""
    body = {name: encode(value) for name, value in fields.items()}
    return canonical_json({"format": format_tag, "spec_version": SPEC_VERSION, **body})


def read_record(
    data: object,
    *,
    format_tag: str,
    kind: str,
    prefix: str,
    schema: Mapping[str, Parse],
    limits: Limits,
) -> dict[str, Any]:
    """The constructor arguments of one record, read strictly from its canonical bytes.

    Steps: 1. bytes, strict canonical JSON; 2. the format tag; 3. the spec version (before the
    fields, so a later version with new fields reads as unsupported); 4. unknown fields; 5. each
    field, with errors located at ``kind.field``.
    """
    if not isinstance(data, bytes):
        fail(f"{prefix}.not_bytes", kind, f"expected bytes, got {type(data).__name__}")
    document = require_canonical(data, limits=limits, what=kind)
    tag = document.get("format")
    if tag != format_tag:
        reason = f"{prefix}.field_missing" if tag is None else f"{prefix}.format_unknown"
        fail(reason, f"{kind}.format", f"{str(tag)[:64]!r} is not {format_tag!r}")
    version = document.get("spec_version")
    if isinstance(version, bool) or version != SPEC_VERSION:
        fail(
            f"{prefix}.version_unsupported",
            f"{kind}.spec_version",
            f"{str(version)[:64]!r}, only {SPEC_VERSION} is understood",
        )
    # The header is there (checked above), so with every schema field present, equal sizes
    # mean no unknown field.
    if len(document) != len(schema) + len(_HEADER) or not schema.keys() <= document.keys():
        unknown = sorted(set(document) - set(schema) - _HEADER)
        if unknown:
            fail(f"{prefix}.field_unknown", f"{kind}.{unknown[0][:64]}", "unknown field")
        missing = next(name for name in schema if name not in document)
        fail(f"{prefix}.field_missing", f"{kind}.{missing}", "missing")
    values: dict[str, Any] = {}
    for name, parse in schema.items():
        try:
            values[name] = document[name] if parse is as_is else parse(document[name])
        except InputError as e:
            raise located(e, f"{kind}.{name}") from e
    return values


def as_is(value: object) -> object:
    """The :data:`Parse` of a field whose JSON value the constructor checks itself (the
    reader passes such values without a call)."""
    return value
