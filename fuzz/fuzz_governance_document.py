"""Fuzz target: governance documents (``brakepedal.governance.documents.parse_document``).

Only :class:`~brakepedal.errors.BrakepedalError` may escape. A document that parses must have
exactly one byte form (its canonical bytes are the input) and must convert to policy terms.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from brakepedal.errors import BrakepedalError
from brakepedal.governance.documents import (
    LiftOrder,
    PauseOrder,
    TrainingPermit,
    parse_document,
)
from brakepedal.governance.rules import check_sunset, needs_order_quorum, order_terms, permit_terms
from brakepedal.model.limits import Limits
from brakepedal.model.types import Flop

# A small bound keeps each run fast while still exercising the size check.
LIMITS = Limits(max_json_bytes=64_000)


def test_one_input(data: bytes) -> None:
    """Parse ``data``; a document that parses must re-encode to ``data`` and yield terms."""
    try:
        document = parse_document(data, limits=LIMITS)
    except BrakepedalError:
        return
    assert document.to_bytes() == data
    assert document.target_path.endswith(".json")
    if isinstance(document, PauseOrder):
        assert order_terms(document, ()) is not None
        with contextlib.suppress(BrakepedalError):
            check_sunset(document, max_sunset=timedelta(days=365))
    elif isinstance(document, LiftOrder):
        assert document.lifts != document.lift_id
    elif isinstance(document, TrainingPermit):
        terms = permit_terms(document)
        assert terms.under_order_quorum == (document.under_order is not None)
        needs_order_quorum(document, (), Flop(10**26))


if __name__ == "__main__":
    from fuzz.harness import main

    main("governance_document", test_one_input)
