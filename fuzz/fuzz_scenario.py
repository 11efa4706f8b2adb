"""Fuzz target: parse a scenario file (YAML, strict, every reference resolved).

Only :class:`~brakepedal.errors.BrakepedalError` may escape the parser; anything else is a bug.
"""

from __future__ import annotations

from brakepedal.errors import BrakepedalError
from brakepedal.sim.scenario import parse_scenario


def test_one_input(data: bytes) -> None:
    """Parse ``data`` as a scenario; only brakepedal's own errors are acceptable."""
    try:
        parse_scenario(data, name="fuzz")
    except BrakepedalError:
        return


if __name__ == "__main__":
    from fuzz.harness import main

    main("scenario", test_one_input)
