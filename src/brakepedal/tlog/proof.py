"""Inclusion and consistency proofs as they travel: typed objects and their JSON form.

A proof on the wire is a JSON object with a ``type`` of ``"inclusion"`` or ``"consistency"``,
integer sizes and standard base64 hashes (RFC 4648 section 4, padded), for example::

    {"type": "inclusion", "log_index": 3, "tree_size": 8,
     "leaf_hash": "bjQL...", "hashes": ["...", "..."]}

    {"type": "consistency", "old_size": 4, "new_size": 8, "hashes": ["...", "..."]}

Sizes and indices are below 2^53, the largest integers JSON carries exactly.
Parsing is strict: unknown fields, missing fields, booleans for integers, hashes of any length
but 32 bytes and more hashes than :attr:`Limits.max_proof_hashes` are rejected with an
:class:`InputError` naming the field. Verification delegates to :mod:`brakepedal.tlog.merkle`
and raises :class:`TrustError` when the proof does not lead to the root it is checked against.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from brakepedal.crypto.canonical import parse_json_object
from brakepedal.errors import InputError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.tlog import merkle
from brakepedal.tlog.note import b64decode_canonical

__all__ = ["ConsistencyProof", "InclusionProof", "parse_proof"]

_MAX_JSON_INT = 2**53 - 1
_INCLUSION_FIELDS = frozenset({"type", "log_index", "tree_size", "leaf_hash", "hashes"})
_CONSISTENCY_FIELDS = frozenset({"type", "old_size", "new_size", "hashes"})


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Proof that the leaf with ``leaf_hash`` sits at ``log_index`` in the tree of ``tree_size``."""

    log_index: int
    tree_size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _require_size("log_index", self.log_index)
        _require_size("tree_size", self.tree_size)
        if self.log_index >= self.tree_size:
            raise InputError(
                "proof.index_out_of_range",
                f"log_index {self.log_index} is not below tree_size {self.tree_size}",
            )
        _require_hash("leaf_hash", self.leaf_hash)
        for position, node in enumerate(self.hashes):
            _require_hash(f"hashes[{position}]", node)

    def verify(self, root: bytes, *, limits: Limits = DEFAULT_LIMITS) -> None:
        """Raise :class:`TrustError` unless this proof leads to ``root``."""
        merkle.verify_inclusion(
            leaf_hash=self.leaf_hash,
            index=self.log_index,
            size=self.tree_size,
            proof=self.hashes,
            root=root,
            limits=limits,
        )

    def to_json(self) -> bytes:
        return _dump(
            {
                "type": "inclusion",
                "log_index": self.log_index,
                "tree_size": self.tree_size,
                "leaf_hash": _b64(self.leaf_hash),
                "hashes": [_b64(node) for node in self.hashes],
            }
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """Proof that the tree of ``old_size`` is a prefix of the tree of ``new_size``."""

    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _require_size("old_size", self.old_size)
        _require_size("new_size", self.new_size)
        if self.old_size > self.new_size:
            raise InputError(
                "proof.sizes_out_of_order",
                f"old_size {self.old_size} is larger than new_size {self.new_size}",
            )
        for position, node in enumerate(self.hashes):
            _require_hash(f"hashes[{position}]", node)

    def verify(self, old_root: bytes, new_root: bytes, *, limits: Limits = DEFAULT_LIMITS) -> None:
        """Raise :class:`TrustError` unless this proof links ``old_root`` to ``new_root``."""
        merkle.verify_consistency(
            old_size=self.old_size,
            new_size=self.new_size,
            old_root=old_root,
            new_root=new_root,
            proof=self.hashes,
            limits=limits,
        )

    def to_json(self) -> bytes:
        return _dump(
            {
                "type": "consistency",
                "old_size": self.old_size,
                "new_size": self.new_size,
                "hashes": [_b64(node) for node in self.hashes],
            }
        )


def parse_proof(
    data: bytes, *, limits: Limits = DEFAULT_LIMITS
) -> InclusionProof | ConsistencyProof:
    """Parse one proof from its JSON form; every defect is an :class:`InputError`."""
    document = parse_json_object(data, limits=limits, what="proof")
    kind = document.get("type")
    if kind == "inclusion":
        _require_fields(document, _INCLUSION_FIELDS)
        return InclusionProof(
            log_index=_int_field(document, "log_index"),
            tree_size=_int_field(document, "tree_size"),
            leaf_hash=_hash_field(document["leaf_hash"], "leaf_hash"),
            hashes=_hashes_field(document, limits),
        )
    if kind == "consistency":
        _require_fields(document, _CONSISTENCY_FIELDS)
        return ConsistencyProof(
            old_size=_int_field(document, "old_size"),
            new_size=_int_field(document, "new_size"),
            hashes=_hashes_field(document, limits),
        )
    raise InputError(
        "proof.unknown_type",
        f"proof field 'type' must be 'inclusion' or 'consistency', got {kind!r:.40}",
    )


def _require_fields(document: Mapping[str, Any], expected: frozenset[str]) -> None:
    missing = sorted(expected - document.keys())
    if missing:
        raise InputError("proof.missing_field", f"proof is missing field(s) {missing}")
    unknown = sorted(document.keys() - expected)
    if unknown:
        raise InputError("proof.unknown_field", f"proof has unknown field(s) {unknown}")


def _int_field(document: Mapping[str, Any], name: str) -> int:
    value = document[name]
    # bool is an int subclass in Python; JSON true must not pass for 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError("proof.field_not_integer", f"proof field {name!r} must be an integer")
    return value


def _hashes_field(document: Mapping[str, Any], limits: Limits) -> tuple[bytes, ...]:
    value = document["hashes"]
    if not isinstance(value, list):
        raise InputError("proof.field_not_list", "proof field 'hashes' must be a list")
    if len(value) > limits.max_proof_hashes:
        raise InputError(
            "proof.too_many_hashes",
            f"proof has {len(value)} hashes; at most {limits.max_proof_hashes} are accepted",
        )
    return tuple(_hash_field(item, f"hashes[{i}]") for i, item in enumerate(value))


def _hash_field(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise InputError("proof.hash_not_string", f"proof field {name} must be a base64 string")
    decoded = b64decode_canonical(
        value, reason="proof.hash_not_base64", where=f"proof field {name}"
    )
    _require_hash(name, decoded)
    return decoded


def _require_size(name: str, value: int) -> None:
    # JSON integers are exact only below 2^53 (RFC 8785, RFC 7493); no real log comes near.
    if value < 0 or value > _MAX_JSON_INT:
        raise InputError("proof.size_out_of_range", f"{name} must be in [0, 2^53), got {value}")


def _require_hash(name: str, value: bytes) -> None:
    if len(value) != merkle.HASH_SIZE:
        raise InputError(
            "proof.hash_wrong_length",
            f"{name} must be {merkle.HASH_SIZE} bytes, got {len(value)}",
        )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _dump(document: Mapping[str, object]) -> bytes:
    return json.dumps(document, indent=2).encode("utf-8") + b"\n"
