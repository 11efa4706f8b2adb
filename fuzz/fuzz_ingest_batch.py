"""Fuzz target: the registry's batch body and every item's envelope and report parsing."""

from __future__ import annotations

import contextlib

from brakepedal.crypto.dsse import parse_envelope
from brakepedal.errors import BrakepedalError
from brakepedal.registry.ingest import IngestLimits, parse_batch
from brakepedal.wire.report_format import parse_report

_LIMITS = IngestLimits(max_reports=50, max_body_bytes=200_000)


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        for item in parse_batch(data, _LIMITS):
            with contextlib.suppress(BrakepedalError):
                parse_report(parse_envelope(item).payload)


if __name__ == "__main__":
    from fuzz.harness import main

    main("ingest_batch", test_one_input)
