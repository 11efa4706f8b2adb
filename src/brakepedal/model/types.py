"""Core value types: identifiers, UTC time and FLOP quantities.

Every constructor here parses: a value that exists is valid, and every defect is an
:class:`~brakepedal.errors.InputError` with a stable reason.

* Identifiers (:class:`Identifier` and its kinds such as :class:`DeviceId`) are ``str``
  subclasses holding 1 to 128 characters from ``a-z 0-9 - _ . :``, starting with a letter or
  digit. Lowercase ASCII only, so two spellings never name one thing (no case folding, no
  Unicode confusables), and the first character keeps identifiers from looking like options
  or relative paths. Identifiers are names in signed documents, not file names: the CLI must
  not build paths from them.
* Times are timezone-aware UTC :class:`~datetime.datetime` values. On the wire they are
  RFC 3339 strings in the one form :func:`format_utc` writes,
  ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.
* :class:`Flop` is an exact non-negative FLOP count, carried in JSON as a decimal string
  (``docs/adr/0002-flop-quantities.md``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation, localcontext
from typing import ClassVar, Self

from brakepedal.errors import InputError

__all__ = [
    "MAX_FLOP",
    "DeviceId",
    "EntityId",
    "Flop",
    "Identifier",
    "JobId",
    "LineageId",
    "OrderId",
    "PermitId",
    "PolicyId",
    "RunId",
    "SignatoryId",
    "SiteId",
    "epoch_micros",
    "format_utc",
    "from_epoch_micros",
    "parse_utc_timestamp",
    "utc_datetime",
]

_IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9._:-]*")
_IDENTIFIER_MAX = 128


class Identifier(str):
    """A validated identifier; see the module docstring for the rule.

    Subclasses name the kind (``DeviceId``, ``EntityId``...) so signatures and messages say
    which identifier is meant. Being ``str`` subclasses they serialise as plain JSON strings.
    """

    __slots__ = ()
    kind: ClassVar[str] = "identifier"

    def __new__(cls, value: object) -> Self:
        if not isinstance(value, str):
            raise InputError(f"{cls.kind}.not_string", f"{cls.__name__} must be a str")
        if not value:
            raise InputError(f"{cls.kind}.empty", f"{cls.__name__} must not be empty")
        if len(value) > _IDENTIFIER_MAX:
            raise InputError(
                f"{cls.kind}.too_long",
                f"{cls.__name__} has {len(value)} characters, more than {_IDENTIFIER_MAX}",
            )
        if _IDENTIFIER.fullmatch(value) is None:
            raise InputError(
                f"{cls.kind}.invalid_character",
                f"{cls.__name__} {value!r} must be lowercase a-z, 0-9, '-', '_', '.', ':' "
                "and start with a letter or digit",
            )
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str.__repr__(self)})"


class DeviceId(Identifier):
    """An enrolled accelerator."""

    __slots__ = ()
    kind = "device_id"


class EntityId(Identifier):
    """An organisation in the control graph."""

    __slots__ = ()
    kind = "entity_id"


class SiteId(Identifier):
    """A data centre or HPC site."""

    __slots__ = ()
    kind = "site_id"


class JobId(Identifier):
    """A scheduler job, as the operator's scheduler names it."""

    __slots__ = ()
    kind = "job_id"


class RunId(Identifier):
    """A training or inference run (reports attributed to one job)."""

    __slots__ = ()
    kind = "run_id"


class LineageId(Identifier):
    """A chain of runs continuing each other's weights."""

    __slots__ = ()
    kind = "lineage_id"


class PolicyId(Identifier):
    """A versioned, signed policy."""

    __slots__ = ()
    kind = "policy_id"


class OrderId(Identifier):
    """A pause or lift order."""

    __slots__ = ()
    kind = "order_id"


class PermitId(Identifier):
    """A training permit."""

    __slots__ = ()
    kind = "permit_id"


class SignatoryId(Identifier):
    """A party that signs governance documents."""

    __slots__ = ()
    kind = "signatory_id"


# ---------------------------------------------------------------------------------- time

_TIMESTAMP = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})T(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,6}))?(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})"
)
# Longer than any timestamp the pattern accepts; bounds the work on hostile input.
_TIMESTAMP_MAX = 40


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_micros(moment: datetime) -> int:
    """Microseconds since 1970 of a UTC datetime (refused as :func:`utc_datetime` refuses):
    an integer that sorts like the time it encodes, as the databases keep times."""
    if moment.__class__ is datetime and moment.tzinfo is UTC:
        return _utc_micros(moment)
    return (utc_datetime(moment) - _EPOCH) // _MICROSECOND


def from_epoch_micros(value: int) -> datetime:
    """The UTC datetime :func:`epoch_micros` encoded as ``value``."""
    return _EPOCH + value * _MICROSECOND


@functools.lru_cache(maxsize=4096)
def _utc_micros(moment: datetime) -> int:
    # Cached: window boundaries repeat across a fleet (whole minutes), and the arithmetic
    # costs a microsecond, several times per report at ingest and in the audit.
    return (moment - _EPOCH) // _MICROSECOND


def utc_datetime(value: object) -> datetime:
    """``value`` as a UTC datetime, refusing naive and non-UTC datetimes.

    A datetime whose offset is zero (``timezone.utc``, ``ZoneInfo("UTC")``) is returned with
    ``tzinfo=UTC``. Reasons: ``time.not_datetime``, ``time.naive``, ``time.not_utc``.
    """
    if not isinstance(value, datetime):
        raise InputError("time.not_datetime", f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is UTC:
        return value
    offset = value.utcoffset()
    if offset is None:
        raise InputError("time.naive", f"datetime {value.isoformat()} has no timezone")
    if offset != timedelta(0):
        raise InputError("time.not_utc", f"datetime {value.isoformat()} is not in UTC")
    return value.replace(tzinfo=UTC)


def parse_utc_timestamp(text: object) -> datetime:
    """Parse an RFC 3339 timestamp in UTC with a ``Z`` suffix.

    Accepts ``YYYY-MM-DDTHH:MM:SS`` with an optional fraction of 1 to 6 digits and ``Z``;
    uppercase ``T`` and ``Z`` only. Reasons: ``time.not_string``, ``time.not_utc`` (a numeric
    offset, even ``+00:00``: one spelling per instant), ``time.format_invalid``,
    ``time.out_of_range`` (no such date or time, leap seconds included).
    """
    if not isinstance(text, str):
        raise InputError("time.not_string", f"expected a timestamp string, got {type(text)}")
    match = _TIMESTAMP.fullmatch(text) if len(text) <= _TIMESTAMP_MAX else None
    if match is None:
        raise InputError(
            "time.format_invalid",
            f"timestamp {text[:_TIMESTAMP_MAX]!r} is not YYYY-MM-DDTHH:MM:SSZ",
        )
    if match["zone"] != "Z":
        raise InputError("time.not_utc", f"timestamp {text!r} must end in 'Z'")
    fraction = (match["fraction"] or "").ljust(6, "0")
    try:
        # The pattern fixed the shape; fromisoformat (C, unlike strptime) checks the ranges.
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}")
    except ValueError as e:
        raise InputError("time.out_of_range", f"timestamp {text!r}: {e}") from e
    return parsed.replace(microsecond=int(fraction), tzinfo=UTC)


def format_utc(value: datetime) -> str:
    """The canonical text of a UTC datetime: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.

    The fraction is present, with exactly six digits, only when microseconds are non-zero.
    """
    moment = utc_datetime(value)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


# ---------------------------------------------------------------------------------- FLOP

#: Largest FLOP count accepted. All compute ever performed is below 1e32 FLOP; 40 digits keep
#: eight orders of magnitude of headroom while bounding the work a hostile string can cause.
MAX_FLOP = 10**40 - 1

_FLOP_JSON = re.compile(r"0|[1-9][0-9]*")
_FLOP_HUMAN = re.compile(
    r"(?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?)(?:\s*(?P<prefix>[kMGTPEZY]?)FLOPs?)?"
)
_SI_EXPONENT = {"": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18, "Z": 21, "Y": 24}
_HUMAN_MAX = 64


@dataclass(frozen=True, slots=True, order=True)
class Flop:
    """An exact, non-negative count of floating-point operations.

    Python ints are exact at any size; JSON numbers are not beyond 2^53, so the JSON form is
    a decimal string without leading zeros (:meth:`to_json`, :meth:`from_json`). Supports
    ``+``, ``-`` (refusing negative results), ``*`` by a non-negative int and ordering.
    """

    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise InputError("flop.not_integer", f"Flop needs an int, got {type(self.value)}")
        if self.value < 0:
            raise InputError("flop.negative", f"Flop {self.value} is negative")
        if self.value > MAX_FLOP:
            raise InputError("flop.too_large", "Flop count exceeds 10^40 - 1")

    @classmethod
    def from_json(cls, value: object) -> Flop:
        """Parse the JSON form: a string of ASCII digits, no sign, no leading zeros."""
        if not isinstance(value, str):
            raise InputError("flop.not_string", f"FLOP must be a decimal string, got {value!r}")
        if len(value) > len(str(MAX_FLOP)):
            raise InputError("flop.too_large", f"FLOP string of {len(value)} characters")
        if _FLOP_JSON.fullmatch(value) is None:
            reason = "flop.negative" if value.startswith("-") else "flop.not_canonical"
            raise InputError(reason, f"FLOP {value!r} is not digits without leading zeros")
        return cls(int(value))

    def to_json(self) -> str:
        """The JSON form: decimal digits without leading zeros."""
        return str(self.value)

    @classmethod
    def parse_human(cls, text: object) -> Flop:
        """Parse ``"1e25"``, ``"3.8e25"``, ``"1.2 EFLOP"``, ``"100 ZFLOP"`` or plain digits.

        Exact: scientific notation is evaluated as a decimal, and a value that is not a whole
        number of FLOP is refused (``flop.not_integer``) rather than rounded.
        """
        stripped = text.strip() if isinstance(text, str) else ""
        match = _FLOP_HUMAN.fullmatch(stripped) if len(stripped) <= _HUMAN_MAX else None
        if match is None:
            raise InputError("flop.format_invalid", f"cannot read {text!r} as a FLOP count")
        exponent = _SI_EXPONENT[match["prefix"] or ""]
        with localcontext() as context:
            context.prec = 200  # enough for every accepted input; no silent rounding
            try:
                number = Decimal(match["number"]).scaleb(exponent)
            except InvalidOperation as e:  # pragma: no cover (the pattern admits only numbers)
                raise InputError("flop.format_invalid", f"cannot read {text!r}") from e
            if number != number.to_integral_value():
                raise InputError("flop.not_integer", f"{text!r} is not a whole number of FLOP")
            if number > MAX_FLOP:
                raise InputError("flop.too_large", f"{text!r} exceeds 10^40 - 1 FLOP")
            return cls(int(number))

    @classmethod
    def total(cls, items: Iterable[Flop]) -> Flop:
        """The sum of ``items`` (zero for none)."""
        return cls(sum(item.value for item in items))

    def __add__(self, other: Flop) -> Flop:
        if not isinstance(other, Flop):
            return NotImplemented
        return Flop(self.value + other.value)

    def __sub__(self, other: Flop) -> Flop:
        if not isinstance(other, Flop):
            return NotImplemented
        return Flop(self.value - other.value)

    def __mul__(self, factor: int) -> Flop:
        if not isinstance(factor, int) or isinstance(factor, bool):
            return NotImplemented
        return Flop(self.value * factor)

    __rmul__ = __mul__

    def __str__(self) -> str:
        return self.to_json()
