"""Policies as code: thresholds with citations, presets, and evaluation to obligations.

* :mod:`~brakepedal.policy.model`: the typed policy document (``docs/policy.md``).
* :mod:`~brakepedal.policy.load`: parsing TOML/YAML policy files and the shipped presets.
* :mod:`~brakepedal.policy.terms`: the terms of pause orders and permits.
* :mod:`~brakepedal.policy.evaluate`: accounting state in, obligations and violations out.
* :mod:`~brakepedal.policy.explain`: the policy in plain language.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brakepedal.policy.evaluate import evaluate
    from brakepedal.policy.explain import explain
    from brakepedal.policy.findings import Evaluation, Obligation, Quantity, Violation
    from brakepedal.policy.load import load_preset, parse_policy, preset_names
    from brakepedal.policy.model import AccountingRules, Citation, Policy, Rule, Source
    from brakepedal.policy.terms import PauseOrderTerms, PermitTerms

# Loaded on first use (PEP 562): brakepedal.policy.terms is imported by governance on every
# command-line call, and should not pull in pydantic and networkx with it.
_HOME = {
    "evaluate": "evaluate",
    "explain": "explain",
    "Evaluation": "findings",
    "Obligation": "findings",
    "Quantity": "findings",
    "Violation": "findings",
    "load_preset": "load",
    "parse_policy": "load",
    "preset_names": "load",
    "AccountingRules": "model",
    "Citation": "model",
    "Policy": "model",
    "Rule": "model",
    "Source": "model",
    "PauseOrderTerms": "terms",
    "PermitTerms": "terms",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"brakepedal.policy.{home}"), name)


__all__ = [
    "AccountingRules",
    "Citation",
    "Evaluation",
    "Obligation",
    "PauseOrderTerms",
    "PermitTerms",
    "Policy",
    "Quantity",
    "Rule",
    "Source",
    "Violation",
    "evaluate",
    "explain",
    "load_preset",
    "parse_policy",
    "preset_names",
]
