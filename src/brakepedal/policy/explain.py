"""Plain-language text for policies and quantities (``brakepedal policy explain``).

:func:`explain` says, for each rule of a policy, what it measures, where its threshold lies in
units people read ("1e25 FLOP (10 YFLOP)") and where the rule comes from. :func:`format_flop`
and :func:`format_quantity` are shared with the evaluation's one-line explanations: exact
figures stay exact, so "just above the threshold" is visible in the text.
"""

from __future__ import annotations

from fractions import Fraction

from brakepedal.model.types import Flop
from brakepedal.policy.model import Policy, Rule

__all__ = ["explain", "format_flop", "format_quantity", "subject_phrase"]

_PREFIXES = ((24, "Y"), (21, "Z"), (18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k"))
_EXACT_DIGITS = 4
_PLAIN_BELOW = 10**6

_STATUS = {
    "in_force": "in force: its obligations bind",
    "reference": "kept for reference (no longer in force): findings are informational",
    "draft": "a draft: findings are informational",
}

_SUBJECTS = {
    "lineage": "the compute of each model lineage (a run plus every run continuing its weights)",
    "run": "the compute of each declared run",
    "group": "the compute of each ownership group",
    "site": "the combined peak capacity of the devices seen at each site",
    "downstream_modifier": "the compute another group spent continuing a model",
}

_AFFILIATES = {"group": "ownership group", "entity": "entity"}

_KINDS = {
    "notify": "notification is due",
    "permit_required": "training needs a valid permit covering it",
    "prohibited": "the training is prohibited",
    "provider_status": "the developer takes on a provider's obligations",
    "cluster_notify": "the cluster must be reported",
    "cluster_prohibited": "the cluster is prohibited",
}


def _scientific(value: int) -> str:
    digits = str(value)
    significant = digits.rstrip("0")
    exponent = len(digits) - 1
    if value < _PLAIN_BELOW:
        return digits
    mantissa = significant[0] + ("." + significant[1:] if len(significant) > 1 else "")
    return f"{mantissa}e{exponent}"


def _si(value: int, unit: str) -> str:
    """``value`` with the largest SI prefix not above it; at most four significant digits."""
    exponent, prefix = next((e, p) for e, p in _PREFIXES if value >= 10**e)
    whole, rest = divmod(value * 1000 // 10**exponent, 1000)
    amount = f"{whole}.{rest:03d}".rstrip("0").rstrip(".")
    return f"{amount} {prefix}{unit}"


def format_flop(flop: Flop | int) -> str:
    """``1e25 FLOP (10 YFLOP)``; a figure with many significant digits is written in full."""
    value = flop.value if isinstance(flop, Flop) else flop
    if value < _PLAIN_BELOW:
        return f"{value} FLOP"
    if len(str(value).rstrip("0")) > _EXACT_DIGITS:
        return f"{value} FLOP (about {value:.3e})".replace("e+", "e")
    return f"{_scientific(value)} FLOP ({_si(value, 'FLOP')})"


def format_quantity(value: Fraction | int, unit: str) -> str:
    """A measured or threshold figure in ``unit`` (``FLOP``, ``op/s``, ``H100-equivalents``)."""
    if unit == "FLOP" and Fraction(value).denominator != 1:
        exact = Fraction(value)
        return f"{exact} FLOP (about {float(exact):.3e})".replace("e+", "e")
    if unit == "FLOP":
        return format_flop(int(value))
    if isinstance(value, Fraction) and value.denominator != 1:
        return f"{float(value):.6g} {unit} (exactly {value})"
    whole = int(value)
    return f"{_scientific(whole)} {unit}" if unit == "op/s" else f"{whole} {unit}"


def subject_phrase(rule: Rule) -> str:
    """What ``rule`` measures, in words."""
    return _SUBJECTS[rule.subject]


def _threshold(rule: Rule) -> str:
    above = "at least" if rule.threshold_inclusive else "more than"
    if rule.subject == "site":
        unit = "op/s" if rule.cluster_peak_ops_per_s is not None else "H100-equivalents"
        text = f"{above} {format_quantity(rule.capacity_threshold, unit)}"
        return text + (" outside monitored sites" if rule.monitored_sites_exempt else "")
    lower = format_flop(rule.flop_threshold)
    if rule.subject == "downstream_modifier":
        return (
            f"more than {rule.fraction_of_original} of the original model's compute, for "
            f"original models of {above} {lower}"
        )
    text = f"{above} {lower}"
    if rule.during_pause_only:
        floor = f" and {text}" if rule.flop_threshold.value else ""
        text = f"above the pause order's threshold{floor}"
    if rule.upper_flop is not None:
        text += f" and at most {format_flop(rule.upper_flop)}"
    return text


def _rule_text(policy: Policy, index: int, rule: Rule) -> list[str]:
    lines = [
        f"{index}. {rule.title} [{rule.id}]",
        f"   measures: {subject_phrase(rule)}",
        f"   when it is {_threshold(rule)}: {_KINDS[rule.kind]}",
    ]
    if rule.notify_within_days is not None:
        lines.append(f"   deadline: within {rule.notify_within_days} days of crossing")
    if rule.data_domain is not None:
        lines.append(f"   only for training on declared data domain {rule.data_domain!s}")
    if rule.post_training_only:
        lines.append("   only for post-training runs (continuing other weights)")
    if rule.during_pause_only:
        lines.append("   only while a pause order is in force, within the order's scope")
    lines.append(f"   source: {policy.citation_text(rule)}")
    return lines


def explain(policy: Policy) -> str:
    """The policy in plain language: status, how compute is counted, each rule and its source."""
    accounting = policy.accounting
    precisions = ", ".join(str(p) for p in accounting.precisions)
    counting = [
        f"{policy.title} ({policy.id}, version {policy.version})",
        f"status: {_STATUS[policy.status]}",
        f"jurisdiction: {policy.jurisdiction}",
        f"compute is bounded from attested {accounting.bound_basis} time at the fastest of: "
        f"{precisions}",
        "fine-tuning and other continuations count toward the model: "
        + ("yes" if accounting.count_fine_tuning else "no"),
        f"affiliates: compute is summed per {_AFFILIATES[accounting.affiliates]} (control: "
        f"{'at least' if accounting.control_inclusive else 'more than'} "
        f"{accounting.control_threshold} of the votes)",
    ]
    if accounting.exempt_workloads:
        counting.append(f"exempt workloads: {', '.join(accounting.exempt_workloads)}")
    if accounting.rolling_window_days is not None:
        counting.append(f"rolling window: {accounting.rolling_window_days} days")
    lines = [*counting, "", "rules:"]
    for index, rule in enumerate(policy.rules, start=1):
        lines.extend(_rule_text(policy, index, rule))
    lines.extend(["", "sources:"])
    lines.extend(f"- {source.title}: {source.url}" for source in policy.sources)
    return "\n".join(lines) + "\n"
