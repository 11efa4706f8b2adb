"""Fuzz target: the witness state file (``brakepedal witness``), parsing and its round trip."""

from __future__ import annotations

from brakepedal.errors import BrakepedalError
from brakepedal.tlog.witness import WitnessState


def test_one_input(data: bytes) -> None:
    try:
        state = WitnessState.from_bytes(data)
    except BrakepedalError:
        return
    # A state that parses must write itself back in one canonical form that parses to it.
    canonical = state.to_bytes()
    assert WitnessState.from_bytes(canonical) == state
    assert WitnessState.from_bytes(canonical).to_bytes() == canonical


if __name__ == "__main__":
    from fuzz.harness import main

    main("witness_state", test_one_input)
