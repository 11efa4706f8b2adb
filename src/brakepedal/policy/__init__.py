"""Policies as code: thresholds with citations, presets, and evaluation to obligations.

* :mod:`~brakepedal.policy.model`: the typed policy document (``docs/policy.md``).
* :mod:`~brakepedal.policy.load`: parsing TOML/YAML policy files and the shipped presets.
* :mod:`~brakepedal.policy.terms`: the terms of pause orders and permits.
* :mod:`~brakepedal.policy.evaluate`: accounting state in, obligations and violations out.
* :mod:`~brakepedal.policy.explain`: the policy in plain language.
"""

from brakepedal.policy.evaluate import evaluate
from brakepedal.policy.explain import explain
from brakepedal.policy.findings import Evaluation, Obligation, Quantity, Violation
from brakepedal.policy.load import load_preset, parse_policy, preset_names
from brakepedal.policy.model import AccountingRules, Citation, Policy, Rule, Source
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms

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
