"""Fuzz target: the JSON form of inclusion and consistency proofs, then their verification."""

from __future__ import annotations

from brakepedal.errors import BrakepedalError
from brakepedal.tlog.proof import InclusionProof, parse_proof

_ROOT = bytes(32)


def test_one_input(data: bytes) -> None:
    try:
        proof = parse_proof(data)
        if isinstance(proof, InclusionProof):
            proof.verify(_ROOT)
        else:
            proof.verify(_ROOT, _ROOT)
    except BrakepedalError:
        pass


if __name__ == "__main__":
    from fuzz.harness import main

    main("proof_json", test_one_input)
