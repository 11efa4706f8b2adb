"""Canonical JSON (RFC 8785, JCS) for everything brakepedal signs, and a strict JSON parser.

Signed payloads carry no floating-point numbers. RFC 8785 serialises every number as an IEEE
754 double in ECMAScript form, so a float's bytes depend on a shortest-round-trip algorithm that
implementations have got wrong, and an integer above 2^53 silently loses precision. brakepedal
therefore restricts signed JSON to the part of the JSON data model where every implementation
agrees byte for byte: ``null``, booleans, integers within +/-(2^53 - 1), strings, arrays and
objects with string keys. Quantities that need more (FLOP counts, see
:class:`brakepedal.model.types.Flop` and ``docs/adr/0002-flop-quantities.md``) travel as
decimal strings, and times as RFC 3339 strings.

:func:`canonical_json` encodes values for signing; :func:`parse_json_object` reads untrusted
bytes under the same restrictions, so ``canonical_json(parse_json_object(b))`` never fails;
:func:`require_canonical` checks that received bytes are exactly their canonical form.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn, cast

import msgspec
import rfc8785

from brakepedal.errors import InputError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "MAX_SAFE_INTEGER",
    "NotPlainJSONError",
    "canonical_json",
    "is_canonical",
    "loads_plain",
    "parse_json_object",
    "require_canonical",
    "typed_candidate",
]

#: Largest integer an IEEE 754 double holds exactly (ECMAScript ``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INTEGER = 2**53 - 1

# The walk in canonical_json is recursive; values we build ourselves are shallow, and this cap
# turns a runaway structure into our error rather than a RecursionError.
_MAX_ENCODE_DEPTH = 128

# Longest decimal text (with sign) of an integer within +/-MAX_SAFE_INTEGER; longer digit runs
# are refused before int() spends time on them.
_MAX_INT_TEXT = len(str(-MAX_SAFE_INTEGER))


def typed_candidate(data: object, limits: Limits, *, depth: int, size: int | None = None) -> bool:
    """Whether a typed fast reader (a msgspec decoder whose re-encoding is compared with the
    input) may try ``data``: bytes of at most ``size`` (and ``limits.max_json_bytes``), ASCII
    and without a backslash (no escape for two readers to decode differently), of a document
    type that nests ``depth`` deep within ``limits.max_json_depth``. ``False`` sends the input
    to the strict reader, which decides."""
    most = limits.max_json_bytes if size is None else min(size, limits.max_json_bytes)
    return (
        isinstance(data, bytes)
        and len(data) <= most
        and depth <= limits.max_json_depth
        and data.isascii()
        and b"\\" not in data
    )


def canonical_json(value: object) -> bytes:
    """The RFC 8785 canonical bytes of ``value``, for signing and hashing.

    ``value`` may hold ``None``, ``bool``, ``int`` within +/-(2^53 - 1), ``str`` (valid
    Unicode), ``list``/``tuple`` and ``dict`` with ``str`` keys. Floats are refused
    (``canonical.float_not_allowed``): signed payloads carry exact quantities only, as the
    module docstring explains.

    Raises:
        InputError: ``canonical.float_not_allowed``, ``canonical.integer_out_of_range``,
            ``canonical.key_not_string``, ``canonical.type_unsupported``,
            ``canonical.string_invalid`` or ``canonical.too_deep``, naming the path.
    """
    fast = _canonical_fast(value)
    if fast is not None:
        return fast
    _check_encodable(value, "$", 0)
    try:
        return bytes(rfc8785.dumps(cast(Any, value)))
    except rfc8785.CanonicalizationError as e:  # pragma: no cover (the walk above is stricter)
        raise InputError("canonical.invalid", f"cannot canonicalise value: {e}") from e


def _canonical_fast(value: object) -> bytes | None:
    """msgspec's sorted compact encoding of ``value``, when it is RFC 8785's; else None.

    ``value`` must be made of exactly dict, list, str, int, bool and None (:func:`_plain`), the
    encoding is read back by :func:`_canonical_ascii`, which accepts only ASCII canonical JSON
    without escapes, floats or integers beyond 2^53 - 1 (for which msgspec's sorted compact
    encoding and RFC 8785's are the same bytes), and the document read back must equal
    ``value``: so nothing msgspec encodes that RFC 8785 would not (a datetime, bytes, a float,
    a tuple, a dataclass, a non-string key, NaN) slips through. Anything else goes to the walk and
    ``rfc8785``, which name the defect. ``tests/unit/crypto/test_canonical.py`` checks both
    give the same bytes.
    """
    if not _plain(value):
        return None
    try:
        data = _ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return None
    document = _canonical_ascii(data, DEFAULT_LIMITS)
    if document is None or document != value:
        return None
    return data


def _plain(value: object, depth: int = 0) -> bool:
    """Whether ``value`` is made of exactly dict, list, str, int, bool and None (``dict`` at
    the top): what msgspec and RFC 8785 encode alike. A dataclass, a datetime or a value whose
    ``__eq__`` says yes to anything is not (msgspec would encode it; RFC 8785 refuses)."""
    kind = type(value)
    if depth == 0 and kind is not dict:
        return False
    if kind is dict:
        return depth < _MAX_ENCODE_DEPTH and all(
            type(key) is str and _plain(item, depth + 1)
            for key, item in value.items()  # type: ignore[attr-defined]
        )
    if kind is list:
        return depth < _MAX_ENCODE_DEPTH and all(
            _plain(item, depth + 1)
            for item in value  # type: ignore[attr-defined]
        )
    return value is None or kind is bool or kind is int or isinstance(value, str)


def _check_encodable(value: object, path: str, depth: int) -> None:
    """Refuse anything outside the exact subset described in the module docstring."""
    if depth > _MAX_ENCODE_DEPTH:
        _refuse("canonical.too_deep", f"{path}: nested deeper than {_MAX_ENCODE_DEPTH}")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            _refuse("canonical.integer_out_of_range", f"{path}: integer beyond +/-(2^53 - 1)")
        return
    if isinstance(value, float):
        _refuse("canonical.float_not_allowed", f"{path}: floats are not allowed in signed JSON")
    if isinstance(value, str):
        _check_string(value, path, "canonical")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_encodable(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                _refuse("canonical.key_not_string", f"{path}: object key {key!r} is not a str")
            _check_string(key, path, "canonical")
            _check_encodable(item, f"{path}.{key}", depth + 1)
    else:
        _refuse("canonical.type_unsupported", f"{path}: {type(value).__name__} is not JSON")


def _check_string(text: str, path: str, prefix: str) -> None:
    # Lone surrogates survive json.loads ("\ud800") but have no UTF-8 encoding.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(
            f"{prefix}.string_invalid", f"{path}: string holds a lone surrogate"
        ) from e


def _refuse(reason: str, message: str) -> NoReturn:
    raise InputError(reason, message)


def parse_json_object(data: bytes, *, limits: Limits = DEFAULT_LIMITS, what: str) -> dict[str, Any]:
    """Parse untrusted bytes holding one JSON object, strictly.

    Strict means: at most ``limits.max_json_bytes``; UTF-8 without a byte-order mark; no
    duplicate object keys (two readers could otherwise see two documents); no ``NaN`` or
    ``Infinity``; no floats and no integers beyond +/-(2^53 - 1) (see the module docstring);
    no lone surrogates; nesting at most ``limits.max_json_depth``; a top-level object.

    ``what`` names the document in messages ("envelope", "proof"). Reasons are the same for
    every caller, so logs and stored evidence read alike: ``json.too_large``,
    ``json.encoding_invalid``, ``json.invalid`` (not JSON), ``json.duplicate_key``,
    ``json.constant_not_allowed``, ``json.float_not_allowed``, ``json.integer_out_of_range``,
    ``json.string_invalid``, ``json.too_deep``, ``json.not_object``.
    """
    fast = _canonical_ascii(data, limits)
    return fast if fast is not None else _parse_strict(data, limits, what)


def _parse_strict(data: bytes, limits: Limits, what: str) -> dict[str, Any]:
    """:func:`parse_json_object` without its fast path: every input, every defect named."""
    if len(data) > limits.max_json_bytes:
        _refuse("json.too_large", f"{what}: {len(data)} bytes > {limits.max_json_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError("json.encoding_invalid", f"{what}: not UTF-8 ({e.reason})") from e
    try:
        document = json.loads(
            text,
            object_pairs_hook=lambda pairs: _object_without_duplicates(pairs, what),
            parse_float=lambda token: _refuse_number(what, "float_not_allowed", token),
            parse_int=lambda token: _parse_safe_int(token, what),
            parse_constant=lambda token: _refuse_number(what, "constant_not_allowed", token),
        )
    except json.JSONDecodeError as e:
        raise InputError("json.invalid", f"{what}: not JSON: {e}") from e
    except RecursionError as e:
        raise InputError("json.too_deep", f"{what}: nested too deeply") from e
    if not isinstance(document, dict):
        _refuse("json.not_object", f"{what}: top level is {type(document).__name__}")
    _check_parsed(document, what, "$", 1, limits.max_json_depth)
    return document


class NotPlainJSONError(Exception):
    """A number signed JSON cannot hold: a float, ``NaN``/``Infinity`` or an integer beyond
    +/-(2^53 - 1). Raised by :func:`loads_plain`; not an :class:`InputError`, because the
    callers fall back to a slower reader that names the defect."""


def _not_plain(token: str) -> NoReturn:
    raise NotPlainJSONError(token)


def _plain_int(token: str) -> int:
    value = int(token) if len(token) <= _MAX_INT_TEXT else MAX_SAFE_INTEGER + 1
    if abs(value) > MAX_SAFE_INTEGER:
        raise NotPlainJSONError(token)
    return value


def loads_plain(text: str | bytes) -> Any:
    """The standard library's ``json.loads`` of ``text``, stopped at the first number outside
    the subset signed JSON may hold (:class:`NotPlainJSONError`).

    Fast, and not strict: duplicate keys, lone surrogates and depth are not checked. Callers
    use it on a fast path whose result they check by re-encoding (see :func:`_canonical_ascii`).

    Raises:
        NotPlainJSONError: a float, ``NaN``/``Infinity`` or an integer beyond 2^53 - 1.
        ValueError, RecursionError: as ``json.loads``.
    """
    return json.loads(text, parse_float=_not_plain, parse_int=_plain_int, parse_constant=_not_plain)


def _canonical_ascii(data: bytes, limits: Limits) -> dict[str, Any] | None:
    """``data`` parsed, if it is ASCII and exactly its canonical form; otherwise ``None``.

    The fast path of :func:`parse_json_object` and :func:`require_canonical`, for the common
    case of canonical input (every signed payload and envelope brakepedal writes). It decides
    only acceptance, never refusal: ``None`` sends the input to the strict parser, which names
    the defect. Acceptance here implies the strict parser's, with the same document:

    * size and depth hold by the checks in front (nesting is at most the number of opening
      brackets);
    * without a backslash, no string holds an escape: no lone surrogate, nothing decoded
      differently by two parsers, and (being ASCII) each string's encoding is its text;
    * without a run of 16 digits, every integer lies within +/-(2^53 - 1) (it has at most
      15 digits); floats stop the parser through its hook; ``NaN``/``Infinity`` are not
      JSON to msgspec; input with such a run is read by the standard library instead, whose
      integer hook checks the range (:func:`_canonical_ascii_long_numbers`);
    * re-encoding equal to ``data`` leaves no room for duplicate keys (the parsed object would
      have fewer), whitespace, ``-0`` or unsorted keys; and for ASCII documents without
      escapes, msgspec's sorted compact encoding is RFC 8785's (keys in code-point order,
      which is UTF-16 order for ASCII; integers in plain decimal).

    The parsing and encoding are msgspec's (C); ``tests/unit/crypto/test_canonical.py`` checks
    both paths agree on generated inputs.
    """
    if (
        len(data) > limits.max_json_bytes
        or not data.isascii()
        or b"\\" in data
        or data.count(b"{") + data.count(b"[") > limits.max_json_depth
    ):
        return None
    if _SIXTEEN_DIGITS in data.translate(_DIGITS_ONLY):
        return _canonical_ascii_long_numbers(data)
    try:
        document = _PLAIN_DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    if type(document) is not dict or _ENCODER.encode(document) != data:
        return None
    return document


def _canonical_ascii_long_numbers(data: bytes) -> dict[str, Any] | None:
    """:func:`_canonical_ascii` for input with a run of 16 digits or more (a long number, or
    digits in a string): the standard library's parser, whose integer hook refuses what lies
    beyond 2^53 - 1, and its sorted compact encoding compared with ``data``."""
    try:
        document = loads_plain(data.decode("ascii"))
    except (NotPlainJSONError, ValueError, RecursionError):
        return None
    if type(document) is not dict:
        return None
    encoded = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return document if encoded.encode("utf-8", "surrogatepass") == data else None


def _refuse_float(token: str) -> NoReturn:
    raise msgspec.ValidationError("a float")


# Digits to "0", everything else to a space: a run of 16 digits becomes 16 zeros (a regular
# expression takes ten times as long on a kilobyte of base64).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_SIXTEEN_DIGITS = b"0" * 16
_PLAIN_DECODER = msgspec.json.Decoder(float_hook=_refuse_float)
_ENCODER = msgspec.json.Encoder(order="sorted")


def _object_without_duplicates(pairs: list[tuple[str, Any]], what: str) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            _refuse("json.duplicate_key", f"{what}: object key {key!r} appears twice")
        document[key] = value
    return document


def _refuse_number(what: str, kind: str, token: str) -> NoReturn:
    _refuse(f"json.{kind}", f"{what}: number {token[:40]!r} is not allowed in signed JSON")


def _parse_safe_int(token: str, what: str) -> int:
    value = int(token) if len(token) <= _MAX_INT_TEXT else None
    if value is None or abs(value) > MAX_SAFE_INTEGER:
        _refuse("json.integer_out_of_range", f"{what}: integer {token[:40]} beyond 2^53 - 1")
    return value


def _check_parsed(value: object, what: str, path: str, depth: int, max_depth: int) -> None:
    """Depth and string checks that json.loads has no hook for."""
    if isinstance(value, str):
        _check_string(value, f"{what}: {path}", "json")
        return
    if not isinstance(value, dict | list):
        return
    if depth > max_depth:
        _refuse("json.too_deep", f"{what}: {path} nested deeper than {max_depth}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_parsed(item, what, f"{path}[{index}]", depth + 1, max_depth)
        return
    for key, item in value.items():
        _check_string(key, f"{what}: {path}", "json")
        _check_parsed(item, what, f"{path}.{key}", depth + 1, max_depth)


def is_canonical(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Whether ``data`` is a strict JSON object exactly in its RFC 8785 canonical form.

    A predicate for filters and reports; verification code calls :func:`require_canonical`.
    """
    try:
        require_canonical(data, limits=limits)
    except InputError:
        return False
    return True


def require_canonical(
    data: bytes, *, limits: Limits = DEFAULT_LIMITS, what: str = "canonical"
) -> dict[str, Any]:
    """Parse ``data`` strictly and insist its bytes are exactly the canonical form.

    Returns the parsed object. Raises :class:`InputError` with the reasons of
    :func:`parse_json_object`, or ``canonical.not_canonical``; ``what`` names the input.
    """
    fast = _canonical_ascii(data, limits)
    if fast is not None:
        return fast
    document = _parse_strict(data, limits, what)
    if _encoded_like_rfc8785(document, data) != data:
        _refuse("canonical.not_canonical", f"{what}: bytes are not in RFC 8785 canonical form")
    return document


def _encoded_like_rfc8785(document: dict[str, Any], data: bytes) -> bytes:
    """The canonical form of ``document``, as far as it matters for comparing with ``data``.

    For ASCII ``data`` the standard library's sorted, compact encoding is used: the parser
    admits no floats and no lone surrogates, so the two encodings can differ only in the
    order of keys beyond ASCII and in non-ASCII text, and any non-ASCII character in the
    document makes both encodings non-ASCII, hence both unequal to ``data``. It is several
    times faster than the pure-Python encoder, which every other input goes through
    (``tests/unit/crypto/test_canonical.py`` checks the two verdicts agree).
    """
    if data.isascii():
        return json.dumps(
            document, ensure_ascii=False, separators=(",", ":"), sort_keys=True
        ).encode("utf-8", "surrogatepass")
    return canonical_json(document)
