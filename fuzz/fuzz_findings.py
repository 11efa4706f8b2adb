"""Fuzz target: an auditor's finding set as the registry checks it and as a reader opens it.

``check_findings_envelope`` (what ``POST /v1/findings`` runs) and ``open_findings`` (what a
reader of the log runs, with the auditor's key) may raise only
:class:`~brakepedal.errors.BrakepedalError`. The seeds include a finding set signed by RFC 8032
TEST 1's published test key, so the fuzzer reaches the signature and the document checks.
"""

from __future__ import annotations

import contextlib

from brakepedal.audit.findings import open_findings
from brakepedal.errors import BrakepedalError
from brakepedal.model.limits import Limits
from brakepedal.wire.findings import check_findings_envelope
from fuzz.fuzz_envelope import TEST_KEY

LIMITS = Limits(max_envelope_bytes=64_000, max_json_bytes=64_000, max_envelope_signatures=8)


def test_one_input(data: bytes) -> None:
    """Check ``data`` as a finding-set envelope and open it; only our errors may escape."""
    with contextlib.suppress(BrakepedalError):
        check_findings_envelope(data, limits=LIMITS)
    try:
        open_findings(data, TEST_KEY)
    except BrakepedalError:
        return


if __name__ == "__main__":
    from fuzz.harness import main

    main("findings", test_one_input)
