"""The agreement file of ``brakepedal gov init``: TOML naming key files and vkeys.

::

    [agreement]
    policy_threshold = 6          # root, top-level targets and policies
    order_threshold = 4           # pause orders, lifts, permits under a pause
    permit_threshold = 2          # the permit authority
    witness_threshold = 2
    max_sunset_days = 180
    expires = "2027-12-31T00:00:00Z"
    log_origin = "gov.example/log"
    log_vkey = "log.vkey"         # a file next to this one, or the vkey itself
    operator_keys = ["operator.pub.json"]

    [[parties]]
    name = "party-1"
    key = "party-1.pub.json"

    [[permit_authority]]
    name = "authority-1"
    key = "authority-1.pub.json"

    [[witnesses]]
    vkey = "witness-1.vkey"
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from brakepedal.cli.files import read_input, vkey_text
from brakepedal.crypto.keys import public_key_from_json
from brakepedal.errors import InputError, located
from brakepedal.governance.agreement import Agreement, Party
from brakepedal.model.types import SignatoryId, parse_utc_timestamp

__all__ = ["load_agreement"]

_MAX_FILE = 1_000_000
_T = TypeVar("_T")


def _key_file(base: Path, value: object, where: str) -> Any:
    if not isinstance(value, str):
        raise InputError("agreement.field_invalid", f"{where}: expected a key file path")
    return public_key_from_json(read_input(base / value, what=where, max_bytes=65536))


def _vkey(base: Path, value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InputError("agreement.field_invalid", f"{where}: expected a vkey or vkey file")
    path = base / value
    return vkey_text(str(path)) if path.is_file() else value


def _setting(settings: dict[str, Any], name: str, kind: type[_T]) -> _T:
    if name not in settings:
        raise InputError("agreement.field_missing", f"agreement.{name}: missing")
    value = settings[name]
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise InputError("agreement.field_invalid", f"agreement.{name}: expected {kind.__name__}")
    return value


def _witnesses(base: Path, records: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError("agreement.field_invalid", "witnesses: expected a list of tables")
    for index, record in enumerate(records):
        if set(record) - {"name", "vkey"}:
            raise InputError("agreement.field_invalid", f"witnesses[{index}]: only name and vkey")
    return tuple(
        (str(record.get("name", "")), _vkey(base, record.get("vkey"), f"witnesses[{index}].vkey"))
        for index, record in enumerate(records)
    )


def _parties(base: Path, records: object, field: str) -> tuple[Party, ...]:
    if not isinstance(records, list):
        raise InputError("agreement.field_invalid", f"{field}: expected a list of tables")
    parties = []
    for index, record in enumerate(records):
        where = f"{field}[{index}]"
        if not isinstance(record, dict) or set(record) != {"name", "key"}:
            raise InputError("agreement.field_invalid", f"{where}: needs exactly name and key")
        parties.append(
            Party(SignatoryId(record["name"]), _key_file(base, record["key"], f"{where}.key"))
        )
    return tuple(parties)


_AGREEMENT_FIELDS = {
    "policy_threshold",
    "order_threshold",
    "permit_threshold",
    "witness_threshold",
    "max_sunset_days",
    "expires",
    "log_origin",
    "log_vkey",
    "operator_keys",
}


def load_agreement(path: Path) -> Agreement:
    """An agreement from its TOML file (keys and vkeys named relative to the file)."""
    try:
        document = tomllib.loads(read_input(path, what="agreement", max_bytes=_MAX_FILE).decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError("agreement.invalid", f"agreement {path}: {e}") from e
    unknown = sorted(set(document) - {"agreement", "parties", "permit_authority", "witnesses"})
    settings = document.get("agreement", {})
    if not isinstance(settings, dict):
        raise InputError("agreement.field_invalid", f"agreement {path}: [agreement] is not a table")
    unknown += sorted(f"agreement.{k}" for k in set(settings) - _AGREEMENT_FIELDS)
    if unknown:
        raise InputError(
            "agreement.unknown_field", f"agreement {path}: {unknown[0]}: unknown field"
        )
    base = path.parent
    try:
        return _agreement(base, document, settings)
    except InputError as e:
        raise located(e, f"agreement {path}") from e


_MAX_SUNSET_DAYS = 3660


def _agreement(base: Path, document: dict[str, Any], settings: dict[str, Any]) -> Agreement:
    operator_keys = _setting(settings, "operator_keys", list)
    sunset_days = _setting(settings, "max_sunset_days", int)
    if not 0 < sunset_days <= _MAX_SUNSET_DAYS:
        raise InputError("agreement.sunset_invalid", "agreement.max_sunset_days: 1 to 3660")
    return Agreement(
        parties=_parties(base, document.get("parties"), "parties"),
        policy_threshold=_setting(settings, "policy_threshold", int),
        order_threshold=_setting(settings, "order_threshold", int),
        permit_authority=_parties(base, document.get("permit_authority"), "permit_authority"),
        permit_threshold=_setting(settings, "permit_threshold", int),
        operator_keys=tuple(_key_file(base, k, "operator_keys") for k in operator_keys),
        witnesses=_witnesses(base, document.get("witnesses", [])),
        witness_threshold=_setting(settings, "witness_threshold", int),
        log_origin=_setting(settings, "log_origin", str),
        log_vkey=_vkey(base, _setting(settings, "log_vkey", str), "agreement.log_vkey"),
        max_sunset=timedelta(days=sunset_days),
        expires=parse_utc_timestamp(_setting(settings, "expires", str)),
    )
