"""The root of the agreement: parties, thresholds and witnesses, as TUF metadata.

python-tuf already solves threshold signatures, expiry, rollback, freeze and key rotation, so
the agreement *is* a TUF repository (ADR 0007):

* ``root``: the parties' keys at the policy threshold (e.g. 6 of 7). Rotating a key or adding
  or removing a party is a new root version, which TUF accepts only when signed by the
  threshold of both the old and the new root.
* ``targets``: the same parties at the same threshold; it only delegates.
* ``snapshot`` and ``timestamp``: the repository operator's online key. It can attest freshness
  and consistency, never content: withholding updates is caught by expiry (freeze).
* delegated roles, terminating, each with its own quorum:

  ============  ======================================  =======================================
  role          paths                                   signed by
  ============  ======================================  =======================================
  ``policies``  ``policies/*``                          parties at the policy threshold
  ``orders``    ``orders/*``, ``lifts/*``,              parties at the order threshold (4 of 7):
                ``quorum-permits/*``                    pause orders, lifts, permits in a pause
  ``permits``   ``permits/*``                           the permit authority at its threshold
  ============  ======================================  =======================================

What TUF has no field for (the witnesses and their threshold, the log, the longest sunset, the
parties' names) travels in root's ``x-brakepedal-agreement`` field: root's signatures cover it,
so changing any of it needs the root threshold too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Key,
    Metadata,
    Role,
    Root,
    Targets,
)

from brakepedal.crypto.keys import public_key_from_json, public_key_to_json
from brakepedal.errors import InputError
from brakepedal.model.types import SignatoryId, format_utc, parse_utc_timestamp, utc_datetime
from brakepedal.tlog.cosignature import CosignatureVerifier
from brakepedal.tlog.note import NoteVerifier

__all__ = [
    "AGREEMENT_FIELD",
    "DELEGATED_ROLES",
    "ROLE_ORDERS",
    "ROLE_PERMITS",
    "ROLE_POLICIES",
    "Agreement",
    "Party",
    "agreement_of",
    "build_root",
    "build_targets",
    "role_for_path",
]

AGREEMENT_FIELD = "x-brakepedal-agreement"
ROLE_POLICIES = "policies"
ROLE_ORDERS = "orders"
ROLE_PERMITS = "permits"
DELEGATED_ROLES = (ROLE_POLICIES, ROLE_ORDERS, ROLE_PERMITS)
_PATHS = {
    ROLE_POLICIES: ["policies/*"],
    ROLE_ORDERS: ["orders/*", "lifts/*", "quorum-permits/*"],
    ROLE_PERMITS: ["permits/*"],
}
_MAX_PARTIES = 64


@dataclass(frozen=True, slots=True)
class Party:
    """A signatory and its public key."""

    name: SignatoryId
    key: Key


@dataclass(frozen=True, slots=True)
class Agreement:
    """Everything the parties agreed on, checked when it is built."""

    parties: tuple[Party, ...]
    policy_threshold: int
    order_threshold: int
    permit_authority: tuple[Party, ...]
    permit_threshold: int
    operator_keys: tuple[Key, ...]
    witnesses: tuple[tuple[str, str], ...]
    witness_threshold: int
    log_origin: str
    log_vkey: str
    max_sunset: timedelta
    expires: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "expires", utc_datetime(self.expires))
        _check_parties("parties", self.parties)
        _check_parties("permit_authority", self.permit_authority)
        _check_threshold("policy_threshold", self.policy_threshold, len(self.parties))
        _check_threshold("order_threshold", self.order_threshold, len(self.parties))
        _check_threshold("permit_threshold", self.permit_threshold, len(self.permit_authority))
        _check_threshold("witness_threshold", self.witness_threshold, len(self.witnesses))
        if not self.operator_keys:
            raise InputError("agreement.operator_missing", "operator_keys: at least one key")
        _check_distinct_keys([p.key for p in self.parties + self.permit_authority], "keys")
        NoteVerifier.from_vkey(self.log_vkey)
        verifiers = [CosignatureVerifier.from_vkey(vkey) for _, vkey in self.witnesses]
        if len({v.name for v in verifiers}) != len(verifiers):
            raise InputError("agreement.duplicate_key", "witnesses: a witness is listed twice")
        if not timedelta(0) < self.max_sunset <= timedelta(days=3660):
            raise InputError("agreement.sunset_invalid", "max_sunset must be within 10 years")

    def party_of(self, keyid: str) -> SignatoryId | None:
        """The party (or permit authority member) holding ``keyid``."""
        for party in self.parties + self.permit_authority:
            if party.key.keyid == keyid:
                return party.name
        return None

    def witness_verifiers(self) -> list[CosignatureVerifier]:
        """Verifiers for the witnesses' cosignatures."""
        return [CosignatureVerifier.from_vkey(vkey) for _, vkey in self.witnesses]

    def log_verifier(self) -> NoteVerifier:
        """The verifier of the transparency log's checkpoints."""
        return NoteVerifier.from_vkey(self.log_vkey)


def _check_parties(field: str, parties: tuple[Party, ...]) -> None:
    if not parties or len(parties) > _MAX_PARTIES:
        raise InputError("agreement.parties_invalid", f"{field}: 1 to {_MAX_PARTIES} parties")
    names = [p.name for p in parties]
    if len(set(names)) != len(names):
        raise InputError("agreement.parties_invalid", f"{field}: a party is listed twice")


def _check_threshold(field: str, value: int, count: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= count:
        raise InputError("agreement.threshold_invalid", f"{field}: {value!r} not in 1..{count}")


def _check_distinct_keys(keys: list[Key], field: str) -> None:
    """One public key may appear once: two keyids for one key would count twice (STYLE 4)."""
    seen: dict[str, str] = {}
    keyids: set[str] = set()
    for key in keys:
        if key.keyid in keyids:
            raise InputError("agreement.duplicate_key", f"{field}: key {key.keyid} listed twice")
        keyids.add(key.keyid)
        material = str(key.keyval.get("public"))
        other = seen.setdefault(material, key.keyid)
        if other != key.keyid:
            raise InputError(
                "agreement.duplicate_key",
                f"{field}: one public key under keyids {other} and {key.keyid}",
            )


def _custom(agreement: Agreement) -> dict[str, Any]:
    return {
        "parties": {p.name: p.key.keyid for p in agreement.parties},
        "permit_authority": {
            p.name: {"keyid": p.key.keyid, "key": p.key.to_dict()}
            for p in agreement.permit_authority
        },
        "witnesses": [{"name": n, "vkey": v} for n, v in agreement.witnesses],
        "witness_threshold": agreement.witness_threshold,
        "log": {"origin": agreement.log_origin, "vkey": agreement.log_vkey},
        "max_sunset_seconds": int(agreement.max_sunset.total_seconds()),
        "permit_threshold": agreement.permit_threshold,
        "order_threshold": agreement.order_threshold,
    }


def build_root(agreement: Agreement, *, version: int = 1) -> Metadata[Root]:
    """Unsigned root metadata of ``agreement`` (sign it with the parties' keys)."""
    party_ids = [p.key.keyid for p in agreement.parties]
    operator_ids = [k.keyid for k in agreement.operator_keys]
    keys = {p.key.keyid: p.key for p in agreement.parties}
    keys |= {k.keyid: k for k in agreement.operator_keys}
    roles = {
        "root": Role(party_ids, agreement.policy_threshold),
        "targets": Role(party_ids, agreement.policy_threshold),
        "snapshot": Role(operator_ids, 1),
        "timestamp": Role(operator_ids, 1),
    }
    root = Root(
        version=version,
        expires=agreement.expires,
        keys=keys,
        roles=roles,
        consistent_snapshot=True,
        unrecognized_fields={AGREEMENT_FIELD: _custom(agreement)},
    )
    return Metadata(root)


def build_targets(agreement: Agreement, *, version: int = 1) -> Metadata[Targets]:
    """Unsigned top-level targets metadata: the three delegations, nothing else."""
    party_ids = [p.key.keyid for p in agreement.parties]
    authority_ids = [p.key.keyid for p in agreement.permit_authority]
    keys = {p.key.keyid: p.key for p in agreement.parties + agreement.permit_authority}
    members = {ROLE_POLICIES: party_ids, ROLE_ORDERS: party_ids, ROLE_PERMITS: authority_ids}
    thresholds = {
        ROLE_POLICIES: agreement.policy_threshold,
        ROLE_ORDERS: agreement.order_threshold,
        ROLE_PERMITS: agreement.permit_threshold,
    }
    roles = {
        name: DelegatedRole(name, members[name], thresholds[name], True, _PATHS[name])
        for name in DELEGATED_ROLES
    }
    delegations = Delegations(keys=keys, roles=roles)
    return Metadata(Targets(version=version, expires=agreement.expires, delegations=delegations))


def role_for_path(path: str) -> str:
    """The delegated role that may sign the document at ``path``."""
    top = path.split("/", 1)[0] + "/*"
    for role, patterns in _PATHS.items():
        if top in patterns:
            return role
    raise InputError("governance.path_unknown", f"no role may sign documents at {path!r}")


def agreement_of(root: Root) -> Agreement:
    """Read the agreement back from verified root metadata.

    Raises:
        InputError: ``agreement.*`` when the custom field is missing or malformed.
    """
    custom = root.unrecognized_fields.get(AGREEMENT_FIELD)
    if not isinstance(custom, dict):
        raise InputError("agreement.field_missing", f"root has no {AGREEMENT_FIELD} field")
    try:
        return _agreement_from_custom(root, custom)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError("agreement.field_invalid", f"{AGREEMENT_FIELD}: {e!r}") from e


def _agreement_from_custom(root: Root, custom: Mapping[str, Any]) -> Agreement:
    parties = tuple(Party(SignatoryId(n), root.keys[k]) for n, k in custom["parties"].items())
    authority = tuple(
        Party(SignatoryId(n), Key.from_dict(v["keyid"], dict(v["key"])))
        for n, v in custom["permit_authority"].items()
    )
    operator = tuple(root.keys[k] for k in root.roles["timestamp"].keyids)
    return Agreement(
        parties=parties,
        policy_threshold=root.roles["root"].threshold,
        order_threshold=int(custom["order_threshold"]),
        permit_authority=authority,
        permit_threshold=int(custom["permit_threshold"]),
        operator_keys=operator,
        witnesses=tuple((str(w["name"]), str(w["vkey"])) for w in custom["witnesses"]),
        witness_threshold=int(custom["witness_threshold"]),
        log_origin=str(custom["log"]["origin"]),
        log_vkey=str(custom["log"]["vkey"]),
        max_sunset=timedelta(seconds=int(custom["max_sunset_seconds"])),
        expires=root.expires,
    )


def key_from_file_bytes(data: bytes) -> Key:
    """A party's public key from the JSON ``brakepedal keys generate`` writes."""
    return public_key_from_json(data)


def key_to_file_bytes(key: Key) -> bytes:
    """The JSON form of a party's public key."""
    return public_key_to_json(key)


def expires_text(moment: datetime) -> str:
    """A UTC time as the agreement file writes it."""
    return format_utc(moment)


def parse_expires(text: object) -> datetime:
    """A UTC time from the agreement file."""
    return parse_utc_timestamp(text)
