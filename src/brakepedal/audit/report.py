"""The report people read: one self-contained HTML page and a JSON file, from the state.

``brakepedal audit report`` renders what the last ``audit run`` verified and found, from the
auditor's own state (never the registry's): a summary; compute per owner over time, summed
into ownership groups where holdings were declared, against the policy's thresholds; the
orders and permits timeline; device liveness (which devices reported when); and the findings
table with their evidence (log indices, leaf hashes, the figures). Plots are matplotlib PNGs
embedded as data URIs, so the page opens anywhere, offline, and can be archived as one file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from brakepedal.accounting.catalogue import Catalogue, Precision, default_catalogue
from brakepedal.accounting.flop import BoundBasis, BoundRule, attested_bound
from brakepedal.audit.state import AuditState, DeviceRow, ReportRow
from brakepedal.errors import InputError

__all__ = ["render_report"]

_US = 1_000_000
_COLOURS = {
    "critical": "#b00020",
    "high": "#d9480f",
    "medium": "#c99a06",
    "low": "#1971c2",
    "info": "#868e96",
}


def render_report(state: AuditState, out: Path, *, catalogue: Catalogue | None = None) -> Path:
    """Write ``report.html`` and ``report.json`` into ``out``; the HTML file's path."""
    catalogue = catalogue or default_catalogue()
    devices = state.devices()
    reports = state.reports()
    findings = state.current_findings()
    last = state.last_run()
    context = last.get("context", {})
    checkpoints = state.checkpoints()
    summary = {
        "origin": state.meta("origin"),
        "audited_at": last.get("at"),
        "tree_size": state.verified_size(),
        "witnessed": [
            {"size": c.size, "witnesses": list(c.witnesses)} for c in checkpoints if c.witnesses
        ],
        "devices": len(devices),
        "reports": len(reports),
        "findings": len(findings),
    }
    groups = _groups(devices, reports, context.get("holdings", []))
    series = _compute_series(devices, reports, groups, catalogue)
    clock = _Clock(reports)
    document = {
        "summary": summary,
        "context": context,
        "compute": {
            group: [[_when(t), str(total)] for t, total in points]
            for group, points in series.items()
        },
        "findings": [
            {**doc, "first_seen": first, "last_seen": seen} for doc, first, seen in findings
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(document, indent=1, sort_keys=True))
    page = _page(
        summary,
        context,
        findings,
        plots={
            "Training compute by ownership group (FLOP bound of attested busy time; declared "
            "inference left out)": _plot_compute(series, context, clock),
            "Orders and permits": _plot_timeline(
                {"orders": [], "permits": []} | context, reports, clock
            ),
            "Device liveness": _plot_liveness(devices, reports, clock),
        },
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- figures


def _groups(
    devices: dict[str, DeviceRow], reports: list[ReportRow], holdings: list[dict[str, str]]
) -> dict[str, str]:
    """Owner -> group: an owner held more than half by another joins its group (declared)."""
    parent = {
        h["held"]: h["holder"] for h in holdings if Fraction(h.get("share", "0")) > Fraction(1, 2)
    }

    def top(owner: str) -> str:
        seen = set()
        while owner in parent and owner not in seen:
            seen.add(owner)
            owner = parent[owner]
        return owner

    owners = {r.tenant or devices[r.device].operator for r in reports if r.device in devices}
    return {owner: top(owner) for owner in owners}


def _compute_series(
    devices: dict[str, DeviceRow],
    reports: list[ReportRow],
    groups: dict[str, str],
    catalogue: Catalogue,
) -> dict[str, list[tuple[int, int]]]:
    """Per group: (window end µs, cumulative FLOP bound), in time order."""
    rule = BoundRule(frozenset(Precision), BoundBasis.BUSY)
    points: dict[str, list[tuple[int, int]]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for row in sorted(reports, key=lambda r: r.window_end_us):
        if row.device not in devices or (row.device, row.sequence) in seen:
            continue
        if row.workload == "inference":  # declared inference is outside every pause
            continue
        seen.add((row.device, row.sequence))
        owner = row.tenant or devices[row.device].operator
        try:
            spec = catalogue.get(row.accelerator)
        except InputError:
            continue
        bound = attested_bound(
            spec,
            rule,
            wall_seconds=Fraction(row.window_end_us - row.window_start_us, _US),
            busy_seconds=Fraction(row.busy_ms, 1000),
        ).value
        group = groups.get(owner, owner)
        if group not in points:
            points[group].append((row.window_start_us, 0))  # the curve starts at zero
        points[group].append((row.window_end_us, bound))
    series = {}
    for group, items in points.items():
        total, cumulative = 0, []
        for at, flop in items:
            total += flop
            cumulative.append((at, total))
        series[group] = cumulative
    return series


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _Clock:
    """Hours since the first report (plots put time on a plain axis, labelled with it)."""

    def __init__(self, reports: list[ReportRow]) -> None:
        self.origin = min((r.window_start_us for r in reports), default=0)

    def hours(self, micros: int) -> float:
        return (micros - self.origin) / _US / 3600

    def of(self, text: str) -> float:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return self.hours(int(moment.timestamp() * _US))

    def label(self) -> str:
        return f"hours since {_when(self.origin)}"


def _plot_compute(
    series: dict[str, list[tuple[int, int]]], context: dict[str, Any], clock: _Clock
) -> str:
    figure, axes = plt.subplots(figsize=(9, 4))
    for group, points in sorted(series.items()):
        axes.step(
            [clock.hours(t) for t, _ in points],
            [float(v) for _, v in points],
            where="post",
            label=group,
        )
    thresholds = [(f"order {o['id']}", int(o["threshold_flop"])) for o in context.get("orders", [])]
    thresholds += [
        (f"rule {t['rule']} ({t['subject']})", int(t["flop"]))
        for policy in _policies(context)
        for t in policy.get("thresholds", [])
        if int(t["flop"]) > 0
    ]
    for label, value in thresholds:
        axes.axhline(float(value), linestyle="--", linewidth=1, color="#b00020")
        axes.annotate(label, (0.01, float(value)), xycoords=("axes fraction", "data"), fontsize=8)
    axes.set_ylabel("cumulative FLOP (upper bound)")
    axes.set_xlabel(clock.label())
    if series:
        axes.legend(fontsize=8, loc="upper left")
    return _png(figure)


def _endorsements(checked: dict[str, Any] | None) -> str:
    """What the run's check of the logged endorsement chains found, in a line."""
    if not checked or not checked.get("checked"):
        return "not checked (the auditor was given no manufacturer roots)"
    line = (
        f"{checked['endorsed']} verified, {checked['software']} software keys, "
        f"{checked['invalid']} invalid"
    )
    if checked.get("unchecked"):
        line += f", {checked['unchecked']} read before chains were kept"
    return line


def _policies(context: dict[str, Any]) -> list[dict[str, Any]]:
    """The policies a run evaluated (a state written before several could be: its one)."""
    if "policies" in context:
        return list(context["policies"])
    return [context["policy"]] if "policy" in context else []


def _plot_timeline(context: dict[str, Any], reports: list[ReportRow], clock: _Clock) -> str:
    figure, axes = plt.subplots(figsize=(9, 2.2))
    rows = [(f"order {o['id']}", o["from"], o["sunset"], "#b00020") for o in context["orders"]]
    rows += [
        (f"permit {p['id']} ({p['group']})", p["from"], p["until"], "#2f9e44")
        for p in context["permits"]
    ]
    for y, (label, start, end, colour) in enumerate(rows):
        begin, finish = clock.of(start), clock.of(end)
        axes.barh(y, finish - begin, left=begin, color=colour, alpha=0.6)
        axes.text(begin, y, f" {label} ({start} to {end})", va="center", fontsize=8)
    if reports:
        first = clock.hours(min(r.window_start_us for r in reports))
        last = clock.hours(max(r.window_end_us for r in reports))
        axes.axvspan(first, last, color="#adb5bd", alpha=0.3, label="reports audited")
        axes.legend(fontsize=8, loc="lower right")
        margin = 0.05 * (last - first or 1.0)
        axes.set_xlim(first - margin, last + margin)  # orders run on beyond, to their sunset
    axes.set_yticks([])
    axes.set_xlabel(clock.label())
    if not rows:
        axes.text(0.5, 0.5, "no verified orders or permits", transform=axes.transAxes, ha="center")
    return _png(figure)


def _plot_liveness(devices: dict[str, DeviceRow], reports: list[ReportRow], clock: _Clock) -> str:
    names = sorted(devices)
    index = {name: i for i, name in enumerate(names)}
    figure, axes = plt.subplots(figsize=(9, max(2.0, 0.12 * len(names) + 1)))
    by_device: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in reports:
        if row.device in index:
            start = clock.hours(row.window_start_us)
            by_device[row.device].append((start, clock.hours(row.window_end_us) - start))
    for name, spans in by_device.items():
        axes.broken_barh(spans, (index[name] - 0.4, 0.8), color="#1971c2")
    axes.set_yticks(range(len(names)))
    axes.set_yticklabels(names, fontsize=6 if len(names) > 20 else 8)
    axes.set_xlabel(clock.label() + " (windows reported; gaps are silence)")
    return _png(figure)


def _when(micros: int) -> str:
    return datetime.fromtimestamp(micros / _US, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- the page


def _page(
    summary: dict[str, Any],
    context: dict[str, Any],
    findings: list[tuple[dict[str, Any], str, str]],
    *,
    plots: dict[str, str],
) -> str:
    e = html.escape
    counts: dict[str, int] = defaultdict(int)
    for document, _, _ in findings:
        counts[document["severity"]] += 1
    badges = (
        " ".join(
            f'<span class="badge" style="background:{_COLOURS[s]}">{counts[s]} {s}</span>'
            for s in _COLOURS
            if counts[s]
        )
        or '<span class="badge" style="background:#2f9e44">no findings</span>'
    )
    rows = []
    for document, first, seen in findings:
        colour = _COLOURS.get(document["severity"], "#000")
        evidence = "<br>".join(
            f"log {x['log_index']}: {e(x['role'])} (leaf {e(x['leaf_hash'][:16])}…, "
            f"proof of {len(x['inclusion_proof'])} hashes to tree {x['tree_size']})"
            for x in document.get("evidence", [])
        )
        figures = e(json.dumps(document.get("figures", {}), sort_keys=True))
        rows.append(
            f'<tr class="finding" id="{e(document["id"])}">'
            f'<td><span class="badge" style="background:{colour}">'
            f"{e(document['severity'])}</span></td>"
            f"<td><code>{e(document['detector'])}</code><br><small>{e(document['id'])}</small></td>"
            f"<td>{e(document['subject'])}</td>"
            f"<td>{e(document['summary'])}<br><small>rule: {e(document['rule'])}</small>"
            f"<br><small>figures: <code>{figures}</code></small></td>"
            f"<td><small>{evidence or '-'}</small></td>"
            f"<td><small>{e(first)}<br>{e(seen)}</small></td></tr>"
        )
    table = (
        "<table><thead><tr><th>severity</th><th>finding</th><th>subject</th><th>what</th>"
        "<th>evidence</th><th>first / last seen</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        if rows
        else "<p>No findings: everything the log holds verified and agreed.</p>"
    )
    figures_html = "".join(
        f'<h2>{e(title)}</h2><img alt="{e(title)}" src="data:image/png;base64,{data}">'
        for title, data in plots.items()
    )
    facts = [
        ("log", summary["origin"]),
        ("audited at", summary["audited_at"]),
        ("entries verified", summary["tree_size"]),
        (
            "witnessed checkpoints",
            ", ".join(f"{w['size']} ({', '.join(w['witnesses'])})" for w in summary["witnessed"])
            or "none",
        ),
        ("devices", summary["devices"]),
        ("endorsement chains", _endorsements(context.get("endorsements"))),
        ("reports", summary["reports"]),
        (
            "policies",
            ", ".join(f"{p['id']} v{p['version']}" for p in _policies(context)) or "none",
        ),
        ("orders", ", ".join(o["id"] for o in context.get("orders", [])) or "none"),
        ("permits", ", ".join(p["id"] for p in context.get("permits", [])) or "none"),
    ]
    facts_html = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>brakepedal audit report: {e(str(summary["origin"]))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #212529; }}
table {{ border-collapse: collapse; width: 100%; margin: 1em 0; }}
th, td {{ border-bottom: 1px solid #dee2e6; padding: .4em; text-align: left; vertical-align: top; }}
.badge {{ color: white; border-radius: .3em; padding: .1em .5em; font-size: .85em; }}
img {{ max-width: 100%; }}
code {{ font-size: .85em; word-break: break-all; }}
</style></head><body>
<h1>brakepedal audit report</h1>
<p>{badges}</p>
<table class="facts">{facts_html}</table>
<h2>Findings</h2>
{table}
{figures_html}
<p><small>Every figure here was recomputed by the auditor from the signed reports in the log;
each finding's evidence lists log entries with inclusion proofs against the audited tree
(report.json holds them in full).</small></p>
</body></html>
"""
