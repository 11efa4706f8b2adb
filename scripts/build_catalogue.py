"""Build brakepedal's accelerator catalogue from Epoch AI's "Machine Learning Hardware" table.

Usage (from the repository root)::

    .venv/bin/python scripts/build_catalogue.py [CSV] [--check]

``CSV`` defaults to ``../shared/data/epoch_ml_hardware/ml_hardware_2025-12.csv`` (relative to
the repository root). The script writes ``src/brakepedal/accounting/data/accelerators.json``:
sorted keys, one-space indent, a trailing newline, so the same CSV always gives the same bytes.
With ``--check`` it writes nothing and exits 1 when the shipped file differs from what it would
write. Every row with at least one peak rate is kept; rows without one are skipped and counted.

Epoch's columns are copied as exact integers (a non-integral rate is refused, not rounded; TDP
alone is rounded to whole watts). Where Epoch is blank, ``FILL_INS`` adds a vendor datasheet
figure, each naming its datasheet; a fill-in never overrides a value Epoch has. Peak rates are
dense: a datasheet figure quoted "with sparsity" is halved. ``NVML_NAMES`` and ``ALIASES`` add
the names ``nvmlDeviceGetName`` reports and common short names. The result is checked with
brakepedal's own parser before it is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "epoch_ml_hardware" / "ml_hardware_2025-12.csv"
OUTPUT = ROOT / "src" / "brakepedal" / "accounting" / "data" / "accelerators.json"

FORMAT = "brakepedal.accelerator-catalogue"
VERSION = 1
EPOCH_URL = "https://epoch.ai/data/machine-learning-hardware"
LICENCE = "CC BY 4.0 (Epoch AI); fill-ins from vendor datasheets"

NAME_COLUMN = "Hardware name"
MANUFACTURER_COLUMN = "Manufacturer"
RELEASE_COLUMN = "Release date"
TDP_COLUMN = "TDP (W)"
#: Epoch column -> catalogue precision (the values of brakepedal's ``Precision``).
PRECISION_COLUMNS = {
    "FP64 (double precision) performance (FLOP/s)": "fp64",
    "FP32 (single precision) performance (FLOP/s)": "fp32",
    "FP16 (half precision) performance (FLOP/s)": "fp16",
    "TF32 (TensorFloat-32) performance (FLOP/s)": "tf32",
    "Tensor-FP16/BF16 performance (FLOP/s)": "bf16",
    "FP8 performance (FLOP/s)": "fp8",
    "FP4 performance (FLOP/s)": "fp4",
    "INT8 performance (OP/s)": "int8",
    "INT4 performance (OP/s)": "int4",
}
#: Epoch column -> catalogue field, for the integer fields other than peak rates and TDP.
INTEGER_COLUMNS = {
    "Memory (bytes)": "memory_bytes",
    "Memory bandwidth (byte/s)": "memory_bandwidth_bytes_per_s",
}

#: Below this a fractional rate or size is refused rather than rounded (see ``exact_int``).
MIN_ROUNDED = Decimal(10) ** 6
TERA = Decimal(10) ** 12
GIGA = Decimal(10) ** 9

H100_DATASHEET = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
H100_PAGE = "https://www.nvidia.com/en-us/data-center/h100/"
H800_DATASHEET = (
    "https://www.nvidia.cn/content/dam/en-zz/Solutions/Data-Center/h800/"
    "nvidia-h800-datasheet-2029415.pdf"
)
H200_PAGE = "https://www.nvidia.com/en-us/data-center/h200/"
GH200_PAGE = "https://www.nvidia.com/en-us/data-center/grace-hopper-superchip/"
L4_PAGE = "https://www.nvidia.com/en-us/data-center/l4/"
L40_PAGE = "https://www.nvidia.com/en-us/data-center/l40/"
T4_PAGE = "https://www.nvidia.com/en-us/data-center/tesla-t4/"
A10_PAGE = "https://www.nvidia.com/en-us/data-center/products/a10-gpu/"
ADA_WHITEPAPER = (
    "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"
)


@dataclass(frozen=True)
class FillIn:
    """A datasheet value for a field Epoch leaves blank: ``value`` in the field's base unit."""

    row: str
    field: str
    value: Decimal
    source: str


def _tera(row: str, precision: str, dense: str, source: str) -> FillIn:
    return FillIn(row, precision, Decimal(dense) * TERA, source)


FILL_INS: tuple[FillIn, ...] = (
    _tera("NVIDIA H100 SXM5 80GB", "fp8", "1979",
          f"{H100_DATASHEET} (H100 SXM: FP8 Tensor Core 3,958 TFLOPS with sparsity, 1,979 dense)"),
    _tera("NVIDIA H100 PCIe", "fp8", "1513",
          f"{H100_DATASHEET} (2022 edition, H100 PCIe: FP8 Tensor Core 3,026 TFLOPS with "
          "sparsity, 1,513 dense)"),
    _tera("NVIDIA H100 PCIe", "int8", "1513",
          f"{H100_DATASHEET} (2022 edition, H100 PCIe: INT8 Tensor Core 3,026 TOPS with "
          "sparsity, 1,513 dense)"),
    _tera("NVIDIA H100 NVL", "bf16", "835.5",
          f"{H100_PAGE} (H100 NVL: BFLOAT16/FP16 Tensor Core 1,671 TFLOPS with sparsity, "
          "835.5 dense)"),
    _tera("NVIDIA H100 NVL", "tf32", "417.5",
          f"{H100_PAGE} (H100 NVL: TF32 Tensor Core 835 TFLOPS with sparsity, 417.5 dense)"),
    _tera("NVIDIA H100 NVL", "fp8", "1670.5",
          f"{H100_PAGE} (H100 NVL: FP8 Tensor Core 3,341 TFLOPS with sparsity, 1,670.5 dense)"),
    _tera("NVIDIA H100 NVL", "int8", "1670.5",
          f"{H100_PAGE} (H100 NVL: INT8 Tensor Core 3,341 TOPS with sparsity, 1,670.5 dense)"),
    _tera("NVIDIA H100 NVL", "fp32", "60", f"{H100_PAGE} (H100 NVL: FP32 60 TFLOPS)"),
    _tera("NVIDIA H100 NVL", "fp64", "30", f"{H100_PAGE} (H100 NVL: FP64 30 TFLOPS)"),
    _tera("NVIDIA H800 SXM5", "fp8", "1979",
          f"{H800_DATASHEET} (H800 SXM: FP8 Tensor Core 3,958 TFLOPS with sparsity, 1,979 "
          "dense; the same GH100 SXM5 tensor configuration as the H100 SXM)"),
    FillIn("NVIDIA H200 SXM", "memory_bytes", Decimal(141) * GIGA,
           f"{H200_PAGE} (H200 SXM: GPU memory 141 GB HBM3e, 4.8 TB/s)"),
    _tera("NVIDIA GH200", "fp8", "1979",
          f"{GH200_PAGE} (GH200 Hopper GPU: FP8 Tensor Core 3,958 TFLOPS with sparsity, 1,979 "
          "dense)"),
    _tera("NVIDIA L4", "fp8", "242.5",
          f"{L4_PAGE} (L4: FP8 Tensor Core 485 TFLOPS with sparsity, 242.5 dense)"),
    _tera("NVIDIA L40", "fp8", "362",
          f"{L40_PAGE} (L40: FP8 Tensor Core 362 | 724 TFLOPS with sparsity)"),
    _tera("NVIDIA L40", "tf32", "90.5",
          f"{L40_PAGE} (L40: TF32 Tensor Core 90.5 | 181 TFLOPS with sparsity)"),
    _tera("NVIDIA Tesla T4", "bf16", "65",
          f"{T4_PAGE} (T4: mixed precision FP16/FP32 65 TFLOPS; Turing has no sparsity mode)"),
    _tera("NVIDIA Tesla T4", "int8", "130", f"{T4_PAGE} (T4: INT8 130 TOPS)"),
    _tera("NVIDIA Tesla T4", "int4", "260", f"{T4_PAGE} (T4: INT4 260 TOPS)"),
    _tera("NVIDIA A10 PCIe", "bf16", "125",
          f"{A10_PAGE} (A10: BFLOAT16/FP16 Tensor Core 125 | 250 TFLOPS with sparsity)"),
    _tera("NVIDIA A10 PCIe", "tf32", "62.5",
          f"{A10_PAGE} (A10: TF32 Tensor Core 62.5 | 125 TFLOPS with sparsity)"),
    _tera("NVIDIA A10 PCIe", "int4", "500",
          f"{A10_PAGE} (A10: INT4 Tensor Core 500 | 1,000 TOPS with sparsity)"),
    _tera("NVIDIA GeForce RTX 4090", "fp8", "660.6",
          f"{ADA_WHITEPAPER} (GeForce RTX 4090: peak FP8 Tensor 660.6 | 1,321.2 TFLOPS with "
          "sparsity, FP16 accumulate)"),
)  # fmt: skip

#: Rows whose manufacturer Epoch leaves blank: (manufacturer, source).
MANUFACTURER_FILL_INS = {
    "GroqChip LPU v1": (
        "Groq",
        "https://groq.com/ (the GroqChip is Groq's; Epoch leaves it blank)",
    ),
}

#: What ``nvmlDeviceGetName`` reports -> the Epoch row it is counted as.
NVML_NAMES = {
    "NVIDIA H100 80GB HBM3": "NVIDIA H100 SXM5 80GB",
    "NVIDIA H100 PCIe": "NVIDIA H100 PCIe",
    "NVIDIA H100 NVL": "NVIDIA H100 NVL",
    "NVIDIA H800": "NVIDIA H800 SXM5",
    "NVIDIA H200": "NVIDIA H200 SXM",
    "NVIDIA GH200 480GB": "NVIDIA GH200",
    "NVIDIA A100-SXM4-80GB": "NVIDIA A100 SXM4 80 GB",
    "NVIDIA A100-SXM4-40GB": "NVIDIA A100 SXM4 40 GB",
    "NVIDIA A100-PCIE-40GB": "NVIDIA A100 PCIe",
    # Epoch has no 80 GB PCIe row; its peak rates are those of the 40 GB PCIe card.
    "NVIDIA A100 80GB PCIe": "NVIDIA A100 PCIe",
    "NVIDIA B200": "NVIDIA B200",
    "NVIDIA GB200": "NVIDIA GB200",
    "NVIDIA L4": "NVIDIA L4",
    "NVIDIA L40": "NVIDIA L40",
    "NVIDIA A10G": "NVIDIA A10G",
    "NVIDIA A10": "NVIDIA A10 PCIe",
    "NVIDIA A40": "NVIDIA A40 PCIe",
    "Tesla V100-SXM2-16GB": "NVIDIA Tesla V100 SXM2 16 GB",
    "Tesla V100-SXM2-32GB": "NVIDIA Tesla V100 SXM2 32 GB",
    "Tesla V100-PCIE-16GB": "NVIDIA Tesla V100 PCIe 16 GB",
    "Tesla V100-PCIE-32GB": "NVIDIA Tesla V100 PCIe 32 GB",
    "Tesla T4": "NVIDIA Tesla T4",
    "NVIDIA GeForce RTX 4090": "NVIDIA GeForce RTX 4090",
}

#: Epoch row -> short names people use for it.
ALIASES = {
    "NVIDIA H100 SXM5 80GB": ("H100", "H100 SXM", "H100 SXM5"),
    "NVIDIA H100 PCIe": ("H100 PCIe",),
    "NVIDIA H100 NVL": ("H100 NVL",),
    "NVIDIA H800 SXM5": ("H800", "H800 SXM"),
    "NVIDIA H200 SXM": ("H200", "H200 SXM"),
    "NVIDIA GH200": ("GH200",),
    "NVIDIA HGX H20": ("H20",),
    "NVIDIA B100": ("B100",),
    "NVIDIA B200": ("B200",),
    "NVIDIA GB200": ("GB200",),
    "NVIDIA B300 (Blackwell Ultra)": ("B300",),
    "NVIDIA GB300 (Blackwell Ultra)": ("GB300",),
    "NVIDIA A100": ("A100",),
    "NVIDIA A100 SXM4 80 GB": ("A100 SXM4 80GB", "A100 80GB"),
    "NVIDIA A100 SXM4 40 GB": ("A100 SXM4 40GB",),
    "NVIDIA A100 PCIe": ("A100 PCIe",),
    "NVIDIA V100": ("V100",),
    "NVIDIA L4": ("L4",),
    "NVIDIA L40": ("L40",),
    "NVIDIA Tesla T4": ("T4",),
    "NVIDIA A10G": ("A10G",),
    "NVIDIA A10 PCIe": ("A10",),
    "NVIDIA GeForce RTX 4090": ("RTX 4090",),
    "Google TPU v2": ("TPU v2",),
    "Google TPU v3": ("TPU v3",),
    "Google TPU v4": ("TPU v4",),
    "Google TPU v5e": ("TPU v5e",),
    "Google TPU v5p": ("TPU v5p",),
    "Google TPU v6e Trillium": ("TPU v6e", "Trillium"),
    "Google TPU v7 Ironwood": ("TPU v7", "Ironwood"),
    "AMD Radeon Instinct MI250X": ("MI250X",),
    "AMD Instinct MI300A": ("MI300A",),
    "AMD Instinct MI300X": ("MI300X",),
    "AMD Instinct MI325X": ("MI325X",),
    "AMD Instinct MI350X": ("MI350X",),
    "AMD Instinct MI355X": ("MI355X",),
    "Amazon Trainium2": ("Trainium2",),
    "Amazon Trainium3": ("Trainium3",),
    "Intel Habana Gaudi2": ("Gaudi2",),
    "Intel Habana Gaudi3": ("Gaudi3",),
}


class BuildError(Exception):
    """The CSV or the curated tables above cannot produce a valid catalogue."""


@dataclass
class Report:
    """What the build did, for the script's output."""

    written: int = 0
    skipped: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    rounded: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"accelerators: {self.written}",
            f"rows skipped (no peak rate): {len(self.skipped)}"
            + (f" ({', '.join(self.skipped)})" if self.skipped else ""),
            f"datasheet fill-ins applied: {len(self.filled)}",
        ]
        out += [f"  fill-in not needed, Epoch has a value: {s}" for s in self.superseded]
        out += [f"  disambiguated: {s}" for s in self.renamed]
        out += [f"  float residue: {s}" for s in self.rounded]
        return out


def _normalise(name: str) -> str:
    # The same normalisation as brakepedal.accounting.catalogue uses for lookups.
    return " ".join(re.findall(r"[a-z0-9]+", name.casefold()))


def slug(name: str) -> str:
    """The catalogue id for an Epoch name: lower-case runs of a-z0-9 joined by '-'."""
    return "-".join(re.findall(r"[a-z0-9]+", name.casefold()))


def exact_int(text: str, where: str, notes: list[str]) -> int | None:
    """An Epoch number (``"989400000000000.0"``) as an exact integer; ``None`` when blank.

    Epoch's export writes a few rates with a binary floating-point residue
    (``"65129999999999.9"`` for 65.13 TFLOP/s). A fraction on a value of at least
    ``MIN_ROUNDED`` is such a residue and is rounded up (a peak is an upper bound), with a note;
    a fraction on a smaller value is refused (it would mean a column in the wrong unit).
    """
    text = text.strip()
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BuildError(f"{where}: {text!r} is not a number") from None
    if not value.is_finite():
        raise BuildError(f"{where}: {text!r} is not a number")
    if value == value.to_integral_value():
        return int(value)
    if value < MIN_ROUNDED:
        raise BuildError(f"{where}: {text!r} is not an integer")
    rounded = int(value.to_integral_value(rounding=ROUND_CEILING))
    notes.append(f"{where}: {text} rounded up to {rounded}")
    return rounded


def _positive(value: int | None, where: str) -> int | None:
    if value is not None and value <= 0:
        raise BuildError(f"{where}: must be positive, got {value}")
    return value


def _tdp(text: str, where: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        watts = Decimal(text)
    except InvalidOperation:
        raise BuildError(f"{where}: {text!r} is not a number") from None
    if not watts.is_finite():
        raise BuildError(f"{where}: {text!r} is not a number")
    return _positive(int(watts.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)), where)


def _release(text: str, where: str) -> str | None:
    text = text.strip()
    if text and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise BuildError(f"{where}: release date {text!r} is not YYYY-MM-DD")
    return text or None


def record_from_row(row: Mapping[str, str], notes: list[str]) -> dict[str, Any] | None:
    """The catalogue record for one CSV row, before fill-ins; ``None`` when it has no rate."""
    name = row[NAME_COLUMN].strip()
    if not name:
        raise BuildError("a row has no hardware name")
    peak: dict[str, str] = {}
    for column, precision in PRECISION_COLUMNS.items():
        rate = _positive(exact_int(row[column], f"{name}: {column}", notes), f"{name}: {column}")
        if rate is not None:
            peak[precision] = str(rate)
    if not peak:
        return None
    record: dict[str, Any] = {"id": slug(name), "name": name, "peak_ops_per_s": peak}
    record["manufacturer"] = row[MANUFACTURER_COLUMN].strip()
    for column, key in INTEGER_COLUMNS.items():
        value = _positive(exact_int(row[column], f"{name}: {column}", notes), f"{name}: {column}")
        if value is not None:
            record[key] = str(value)
    tdp = _tdp(row[TDP_COLUMN], f"{name}: {TDP_COLUMN}")
    if tdp is not None:
        record["tdp_watts"] = str(tdp)
    release = _release(row[RELEASE_COLUMN], name)
    if release is not None:
        record["release_date"] = release
    return record


def read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows as dicts (stdlib csv, UTF-8 with an optional BOM)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        needed = {NAME_COLUMN, MANUFACTURER_COLUMN, RELEASE_COLUMN, TDP_COLUMN}
        missing = sorted((needed | set(PRECISION_COLUMNS) | set(INTEGER_COLUMNS)) - columns)
        if missing:
            raise BuildError(f"{path.name}: missing columns {missing}")
        return [dict(row) for row in reader]


def _disambiguate(records: list[dict[str, Any]], report: Report) -> None:
    # Two rows whose names normalise alike would share an id and a lookup name: number them.
    seen: dict[str, int] = {}
    for record in records:
        base = record["id"]
        count = seen.get(base, 0) + 1
        seen[base] = count
        if count > 1:
            record["id"] = f"{base}-{count}"
            record["name"] = f"{record['name']} ({count})"
            report.renamed.append(f"{record['id']} (second row named like {base!r})")


def _apply_fill_ins(by_name: Mapping[str, dict[str, Any]], report: Report) -> None:
    for fill in FILL_INS:
        record = by_name.get(fill.row)
        if record is None:
            raise BuildError(f"fill-in for {fill.row!r}: no such row in the CSV")
        if fill.value != fill.value.to_integral_value() or fill.value <= 0:
            raise BuildError(f"fill-in {fill.row}/{fill.field}: {fill.value} is not a count")
        target = record["peak_ops_per_s"] if fill.field in PRECISION_COLUMNS.values() else record
        if fill.field in target:
            report.superseded.append(f"{fill.row}/{fill.field}")
            continue
        target[fill.field] = str(int(fill.value))
        record.setdefault("sources", {})[fill.field] = fill.source
        report.filled.append(f"{fill.row}/{fill.field}")
    for row, (manufacturer, source) in MANUFACTURER_FILL_INS.items():
        record = by_name.get(row)
        if record is not None and not record["manufacturer"]:
            record["manufacturer"] = manufacturer
            record.setdefault("sources", {})["manufacturer"] = source
            report.filled.append(f"{row}/manufacturer")


def _apply_names(by_name: Mapping[str, dict[str, Any]]) -> None:
    for table, key in ((NVML_NAMES, "nvml_names"), (_invert(ALIASES), "aliases")):
        for name, row in sorted(table.items()):
            if row not in by_name:
                raise BuildError(f"{key} {name!r}: no row {row!r} in the CSV")
            by_name[row].setdefault(key, []).append(name)
    owner: dict[str, str] = {}
    for record in by_name.values():
        for name in (record["name"], *record.get("nvml_names", ()), *record.get("aliases", ())):
            other = owner.setdefault(_normalise(name), record["id"])
            if other != record["id"]:
                raise BuildError(f"name {name!r} is used by both {other!r} and {record['id']!r}")


def _invert(aliases: Mapping[str, Iterable[str]]) -> dict[str, str]:
    return {alias: row for row, names in aliases.items() for alias in names}


def build(rows: Iterable[Mapping[str, str]], source_file: str) -> tuple[dict[str, Any], Report]:
    """The catalogue document for ``rows`` and a report of what was done."""
    report = Report()
    records: list[dict[str, Any]] = []
    for row in rows:
        record = record_from_row(row, report.rounded)
        if record is None:
            report.skipped.append(row[NAME_COLUMN].strip())
        else:
            records.append(record)
    _disambiguate(records, report)
    by_name = {record["name"]: record for record in records}
    _apply_fill_ins(by_name, report)
    _apply_names(by_name)
    for record in records:
        if not record["manufacturer"]:
            raise BuildError(f"{record['name']}: no manufacturer (add a MANUFACTURER_FILL_INS)")
    records.sort(key=lambda record: record["id"])
    report.written = len(records)
    citation = (
        f"Epoch AI, 'Machine Learning Hardware', {EPOCH_URL} (CC BY 4.0), export {source_file}; "
        "vendor datasheet fill-ins as listed per accelerator under sources."
    )
    document = {
        "format": FORMAT,
        "version": VERSION,
        "citation": citation,
        "licence": LICENCE,
        "source_file": source_file,
        "accelerators": records,
    }
    return document, report


def render(document: Mapping[str, Any]) -> bytes:
    """The file's bytes: sorted keys, one-space indent, ASCII, trailing newline."""
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("ascii")


def validate(data: bytes) -> int:
    """Parse ``data`` with brakepedal's own parser; the number of accelerators."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    from brakepedal.accounting.catalogue import parse_catalogue  # noqa: PLC0415

    return len(parse_catalogue(data))


def main(argv: list[str] | None = None) -> int:
    """Build (or with ``--check`` compare) the shipped catalogue; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("csv", nargs="?", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        document, report = build(read_rows(args.csv), args.csv.name)
        data = render(document)
        validate(data)
    except (BuildError, OSError) as e:
        print(f"build_catalogue: {e}", file=sys.stderr)
        return 2
    output: Path = args.output
    if args.check:
        current = output.read_bytes() if output.exists() else b""
        if current != data:
            print(f"{output} is stale: run scripts/build_catalogue.py", file=sys.stderr)
            return 1
        print(f"{output} is up to date ({report.written} accelerators)")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    print(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
