"""Fuzz target: the canonical JSON reader's fast path against its strict parser.

``crypto.canonical._canonical_ascii`` (msgspec) may only accept what the strict parser accepts,
with the same document, and only bytes that are exactly RFC 8785's encoding of it. A
disagreement is a parser differential (two readers seeing two documents) and fails here as an
``AssertionError``; the strict parser itself may only raise brakepedal's own errors.
"""

from __future__ import annotations

import rfc8785

from brakepedal.crypto import canonical
from brakepedal.errors import BrakepedalError
from brakepedal.model.limits import Limits

LIMITS = Limits(max_json_bytes=16_000, max_json_depth=8)


def test_one_input(data: bytes) -> None:
    """Compare both paths on ``data``; only brakepedal's own errors are acceptable."""
    fast = canonical._canonical_ascii(data, LIMITS)
    try:
        strict = canonical.require_canonical(data, limits=LIMITS, what="fuzz")
    except BrakepedalError:
        assert fast is None, f"fast path accepted what the strict parser refuses: {data!r:.200}"
        return
    if fast is not None:
        assert canonical._parse_strict(data, LIMITS, "fuzz") == fast == strict
        assert rfc8785.dumps(fast) == data


if __name__ == "__main__":
    from fuzz.harness import main

    main("canonical", test_one_input)
