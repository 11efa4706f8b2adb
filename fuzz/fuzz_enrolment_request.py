"""Fuzz target: the registry's enrolment request (envelope, payload, proof of possession)."""

from __future__ import annotations

import contextlib

from brakepedal.errors import BrakepedalError
from brakepedal.registry.devices import parse_enrolment


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        parse_enrolment(data)


if __name__ == "__main__":
    from fuzz.harness import main

    main("enrolment_request", test_one_input)
