"""Typed fields of policy documents, and the errors they raise.

Each field type parses its value exactly (no floats for quantities, identifiers in the one
alphabet of :mod:`brakepedal.model.types`) and reports a defect as a pydantic error whose type
becomes the :class:`~brakepedal.errors.InputError` reason ``policy.<type>`` in
:mod:`brakepedal.policy.load`.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Annotated, TypeVar

from pydantic import Field, PlainSerializer, PlainValidator, Strict
from pydantic_core import PydanticCustomError

from brakepedal.accounting.catalogue import Precision
from brakepedal.accounting.document import parse_exact
from brakepedal.errors import InputError
from brakepedal.model.types import Flop, Identifier, PolicyId

__all__ = [
    "MAX_DAYS",
    "MAX_MINUTES",
    "Amount",
    "Days",
    "FlopField",
    "Minutes",
    "Name",
    "Note",
    "OpsRate",
    "PolicyIdField",
    "PrecisionField",
    "Share",
    "StrictBool",
    "Title",
    "Url",
    "policy_error",
]

MAX_DAYS = 3660
MAX_MINUTES = 525_600


def policy_error(kind: str, detail: str, *, field: str | None = None) -> PydanticCustomError:
    """A validation error whose ``kind`` becomes the reason ``policy.<kind>``.

    ``field`` names the offending field below the location pydantic reports (used by
    validators that check several fields at once). The detail is passed as context, never as
    a format template, so braces in user input cannot break the message.
    """
    context: dict[str, str] = {"detail": detail}
    if field is not None:
        context["field"] = field
    return PydanticCustomError(kind, "{detail}", context)


_I = TypeVar("_I", bound=Identifier)


def _identifier(kind: type[_I]) -> Callable[[object], _I]:
    def parse(value: object) -> _I:
        try:
            return kind(value)
        except InputError as e:
            raise policy_error("field_invalid", e.message) from None

    return parse


def _text(limit: int) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise policy_error("field_invalid", "expected a non-empty string")
        if len(value) > limit:
            raise policy_error("field_invalid", f"longer than {limit} characters")
        return value

    return parse


def _url(value: object) -> str:
    text = _text(500)(value)
    if not (text.startswith(("https://", "docs/")) and text.isprintable() and " " not in text):
        raise policy_error("field_invalid", "expected an https:// URL or a docs/ path")
    return text


def _flop(value: object) -> Flop:
    if isinstance(value, float):
        raise policy_error(
            "threshold_not_exact",
            f'{value!r} is a float, which is not exact; write FLOP as a string such as "1e25"',
        )
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise policy_error("threshold_negative", "must not be negative")
        text: object = str(value)
    else:
        text = value
    if isinstance(text, str) and text.strip().startswith("-"):
        raise policy_error("threshold_negative", "must not be negative")
    try:
        return Flop.parse_human(text)
    except InputError as e:
        raise policy_error("threshold_invalid", e.message) from None


def _ops_rate(value: object) -> int:
    rate = _flop(value).value
    if rate == 0:
        raise policy_error("threshold_invalid", "must be positive")
    return rate


def _fraction(*, at_most_one: bool) -> Callable[[object], Fraction]:
    def parse(value: object) -> Fraction:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value.strip().startswith("-"):
            raise policy_error("threshold_negative", "must not be negative")
        try:
            share = parse_exact(value, "value")
        except InputError:
            raise policy_error(
                "field_invalid", 'expected a decimal string like "0.5" or a fraction like "1/3"'
            ) from None
        if share <= 0 or (at_most_one and share > 1):
            bound = "in (0, 1]" if at_most_one else "positive"
            raise policy_error("field_invalid", f"{share} must be {bound}")
        return share

    return parse


def _precision(value: object) -> Precision:
    try:
        return Precision(value if isinstance(value, str) else "")
    except ValueError:
        known = ", ".join(p.value for p in Precision)
        raise policy_error("precision_unknown", f"{value!r} is not one of {known}") from None


PolicyIdField = Annotated[PolicyId, PlainValidator(_identifier(PolicyId)), PlainSerializer(str)]
Name = Annotated[Identifier, PlainValidator(_identifier(Identifier)), PlainSerializer(str)]
Title = Annotated[str, PlainValidator(_text(200))]
Note = Annotated[str, PlainValidator(_text(4000))]
Url = Annotated[str, PlainValidator(_url)]
FlopField = Annotated[Flop, PlainValidator(_flop), PlainSerializer(str)]
OpsRate = Annotated[int, PlainValidator(_ops_rate), PlainSerializer(str)]
Share = Annotated[Fraction, PlainValidator(_fraction(at_most_one=True)), PlainSerializer(str)]
Amount = Annotated[Fraction, PlainValidator(_fraction(at_most_one=False)), PlainSerializer(str)]
PrecisionField = Annotated[Precision, PlainValidator(_precision), PlainSerializer(str)]
StrictBool = Annotated[bool, Strict()]
Days = Annotated[int, Strict(), Field(ge=0, le=MAX_DAYS)]
Minutes = Annotated[int, Strict(), Field(ge=1, le=MAX_MINUTES)]
