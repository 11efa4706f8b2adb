"""Fuzz target: public keys in their JSON form (``keys generate`` writes OUT.pub.json)."""

from __future__ import annotations

import contextlib

from brakepedal.crypto.keys import public_key_from_json
from brakepedal.errors import BrakepedalError


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        public_key_from_json(data)


if __name__ == "__main__":
    from fuzz.harness import main

    main("key_json", test_one_input)
