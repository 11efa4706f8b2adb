"""Fuzz target: the usage document parser, then a ledger built from what it accepted."""

from __future__ import annotations

from datetime import timedelta

from brakepedal.accounting.catalogue import Precision, default_catalogue
from brakepedal.accounting.document import build_ledger, parse_usage_document
from brakepedal.accounting.flop import BoundBasis, BoundRule
from brakepedal.accounting.groups import ControlRule
from brakepedal.accounting.ledger import Subject
from brakepedal.errors import BrakepedalError

_RULE = BoundRule(frozenset({Precision.BF16, Precision.FP8}), BoundBasis.TENSOR_ACTIVE)


def test_one_input(data: bytes) -> None:
    try:
        document = parse_usage_document(data)
        ledger = build_ledger(
            document, catalogue=default_catalogue(), rule=_RULE, control=ControlRule()
        )
        for kind in Subject:
            for subject in ledger.subjects(kind):
                ledger.total(kind, subject)
                ledger.max_rolling(kind, subject, timedelta(minutes=7))
        ledger.modifications()
    except BrakepedalError:
        pass


if __name__ == "__main__":
    from fuzz.harness import main

    main("usage", test_one_input)
