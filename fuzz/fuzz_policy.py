"""Fuzz target: policy files, read as TOML and as YAML (``brakepedal.policy.load``).

Only :class:`~brakepedal.errors.BrakepedalError` may escape the parser; anything else is a bug.
A policy that parses must also explain itself without error.
"""

from __future__ import annotations

from brakepedal.errors import BrakepedalError
from brakepedal.model.limits import Limits
from brakepedal.policy.explain import explain
from brakepedal.policy.load import parse_policy

# A small bound keeps each run fast while still exercising the size check.
LIMITS = Limits(max_json_bytes=64_000)


def test_one_input(data: bytes) -> None:
    """Parse ``data`` as a TOML and as a YAML policy; only brakepedal's own errors may escape."""
    for name in ("fuzz.toml", "fuzz.yaml"):
        try:
            policy = parse_policy(data, name=name, limits=LIMITS)
        except BrakepedalError:
            continue
        assert explain(policy)


if __name__ == "__main__":
    from fuzz.harness import main

    main("policy", test_one_input)
