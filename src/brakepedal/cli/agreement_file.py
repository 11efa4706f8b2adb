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
from typing import Any

from brakepedal.cli.files import read_input
from brakepedal.crypto.keys import public_key_from_json
from brakepedal.errors import InputError
from brakepedal.governance.agreement import Agreement, Party
from brakepedal.model.types import SignatoryId, parse_utc_timestamp

__all__ = ["load_agreement"]

_MAX_FILE = 1_000_000


def _key_file(base: Path, value: object, where: str) -> Any:
    if not isinstance(value, str):
        raise InputError("agreement.field_invalid", f"{where}: expected a key file path")
    return public_key_from_json(read_input(base / value, what=where, max_bytes=65536))


def _vkey(base: Path, value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InputError("agreement.field_invalid", f"{where}: expected a vkey or vkey file")
    path = base / value
    if path.is_file():
        return read_input(path, what=where, max_bytes=4096).decode().strip()
    return value


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
    unknown += sorted(f"agreement.{k}" for k in set(settings) - _AGREEMENT_FIELDS)
    if unknown:
        raise InputError(
            "agreement.unknown_field", f"agreement {path}: {unknown[0]}: unknown field"
        )
    base = path.parent
    try:
        return Agreement(
            parties=_parties(base, document.get("parties"), "parties"),
            policy_threshold=settings["policy_threshold"],
            order_threshold=settings["order_threshold"],
            permit_authority=_parties(base, document.get("permit_authority"), "permit_authority"),
            permit_threshold=settings["permit_threshold"],
            operator_keys=tuple(
                _key_file(base, k, "operator_keys") for k in settings["operator_keys"]
            ),
            witnesses=tuple(
                (str(w.get("name", "")), _vkey(base, w.get("vkey"), f"witnesses[{i}].vkey"))
                for i, w in enumerate(document.get("witnesses", []))
            ),
            witness_threshold=settings["witness_threshold"],
            log_origin=settings["log_origin"],
            log_vkey=_vkey(base, settings["log_vkey"], "agreement.log_vkey"),
            max_sunset=timedelta(days=settings["max_sunset_days"]),
            expires=parse_utc_timestamp(settings["expires"]),
        )
    except KeyError as e:
        raise InputError(
            "agreement.field_missing", f"agreement {path}: agreement.{e.args[0]}: missing"
        ) from e
