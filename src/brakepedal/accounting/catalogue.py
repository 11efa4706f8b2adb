"""The accelerator catalogue: what each kind of device can do at most.

Every compute bound in brakepedal multiplies attested device time by a peak rate from this
catalogue, so the catalogue is data with a version and a source, not constants in code. The
shipped file ``data/accelerators.json`` is built by ``scripts/build_catalogue.py`` from Epoch
AI's "Machine Learning Hardware" table (CC BY 4.0) with vendor datasheet fill-ins where Epoch is
blank (each fill-in names its datasheet); ``docs/accounting.md`` explains the fields.

Peak rates are dense (no structured sparsity), per chip, at boost clock, as exact integers of
operations per second. Lookup accepts the catalogue id, the Epoch name, an alias, or the device
name NVML reports (``nvmlDeviceGetName``, e.g. ``"NVIDIA H100 80GB HBM3"``).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from brakepedal.errors import InputError

__all__ = [
    "CATALOGUE_FORMAT",
    "REFERENCE_ACCELERATOR",
    "TENSOR_PRECISIONS",
    "Accelerator",
    "Catalogue",
    "Precision",
    "default_catalogue",
    "parse_catalogue",
]

CATALOGUE_FORMAT = "brakepedal.accelerator-catalogue"

#: The unit of "H100-equivalents": peak 16-bit tensor throughput of one H100 SXM5.
REFERENCE_ACCELERATOR = "nvidia-h100-sxm5-80gb"

_MAX_PEAK = 10**20  # no chip is within five orders of magnitude of 1e20 op/s


class Precision(StrEnum):
    """Number formats a peak rate is quoted for (Epoch AI's columns)."""

    FP64 = "fp64"
    FP32 = "fp32"
    #: 16-bit floating point on the vector units (no tensor cores).
    FP16 = "fp16"
    TF32 = "tf32"
    #: 16-bit floating point (FP16 or BF16) on tensor cores.
    BF16 = "bf16"
    FP8 = "fp8"
    FP4 = "fp4"
    INT8 = "int8"
    INT4 = "int4"


#: Precisions executed by tensor (matrix) units; the rest run on the vector units.
TENSOR_PRECISIONS = frozenset(
    {Precision.TF32, Precision.BF16, Precision.FP8, Precision.FP4, Precision.INT8, Precision.INT4}
)


def _normalise(name: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", name.casefold()))


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One accelerator model and its peak capabilities.

    ``peak`` maps each precision the source quotes to dense operations per second; a
    precision that is absent is unknown, not zero. ``sources`` maps a field name (a precision
    value, ``"memory_bytes"``...) to the datasheet it was filled in from; fields not listed
    come from Epoch AI.
    """

    id: str
    name: str
    manufacturer: str
    peak: Mapping[Precision, int]
    memory_bytes: int | None = None
    memory_bandwidth_bytes_per_s: int | None = None
    tdp_watts: int | None = None
    release_date: str | None = None
    nvml_names: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"accelerator {self.id!r}"
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.id):
            raise InputError("catalogue.id_invalid", f"{where}: id must be lower-case a-z0-9-")
        if not self.peak:
            raise InputError("catalogue.peak_missing", f"{where}: no peak rate at any precision")
        for precision, rate in self.peak.items():
            if not isinstance(precision, Precision):
                raise InputError("catalogue.precision_unknown", f"{where}: {precision!r}")
            if isinstance(rate, bool) or not isinstance(rate, int) or not 0 < rate < _MAX_PEAK:
                raise InputError(
                    "catalogue.peak_invalid", f"{where}: peak.{precision} must be in (0, 1e20)"
                )
        for name in ("memory_bytes", "memory_bandwidth_bytes_per_s", "tdp_watts"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InputError("catalogue.field_invalid", f"{where}: {name} must be an integer")
            if value is not None and value <= 0:
                raise InputError("catalogue.field_invalid", f"{where}: {name} must be positive")
        object.__setattr__(self, "peak", MappingProxyType(dict(self.peak)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def peak_at(self, precision: Precision) -> int:
        """Dense peak operations per second at ``precision``.

        Raises:
            InputError: ``catalogue.precision_unknown`` when the source quotes no rate for it.
        """
        try:
            return self.peak[precision]
        except KeyError:
            raise InputError(
                "catalogue.precision_unknown",
                f"{self.name}: no peak rate known at {precision}",
                remediation="Choose a precision the catalogue lists for this device, or add "
                "a datasheet fill-in to scripts/build_catalogue.py.",
            ) from None

    def max_peak(self, precisions: Iterable[Precision]) -> int:
        """The highest peak over ``precisions`` that the device has a rate for.

        This is the rate that bounds what the device can do "at any precision the policy
        covers". Raises ``catalogue.precision_unknown`` when it has a rate for none of them.
        """
        wanted = frozenset(precisions)
        rates = [rate for precision, rate in self.peak.items() if precision in wanted]
        if not rates:
            names = ", ".join(sorted(wanted)) or "none"
            raise InputError(
                "catalogue.precision_unknown",
                f"{self.name}: no peak rate known at any of {names}",
            )
        return max(rates)

    def h100_equivalents(self, reference: Accelerator) -> Fraction:
        """This device's 16-bit tensor peak as a fraction of ``reference``'s; conservatively
        the highest of its rates at 16 bits or wider (BF16, FP16, TF32, FP32), so that a device
        quoting no tensor rate, or a vector rate above its tensor rate, is never undercounted."""
        wide = (Precision.BF16, Precision.TF32, Precision.FP16, Precision.FP32)
        rates = [self.peak[p] for p in wide if p in self.peak]
        if not rates:
            raise InputError(
                "catalogue.precision_unknown", f"{self.name}: no 16-bit or wider peak rate known"
            )
        return Fraction(max(rates), reference.peak_at(Precision.BF16))


class Catalogue:
    """A versioned set of accelerators with lookup by id, name, alias and NVML name."""

    def __init__(self, version: int, citation: str, accelerators: Iterable[Accelerator]) -> None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InputError("catalogue.version_invalid", "catalogue version must be >= 1")
        if not citation.strip():
            raise InputError("catalogue.citation_missing", "catalogue has no citation")
        self.version = version
        self.citation = citation
        self._by_id: dict[str, Accelerator] = {}
        self._by_name: dict[str, Accelerator] = {}
        for accelerator in accelerators:
            if accelerator.id in self._by_id:
                raise InputError("catalogue.duplicate", f"accelerator id {accelerator.id!r} twice")
            self._by_id[accelerator.id] = accelerator
            names = (
                accelerator.id,
                accelerator.name,
                *accelerator.aliases,
                *accelerator.nvml_names,
            )
            for name in names:
                key = _normalise(name)
                other = self._by_name.get(key)
                if other is not None and other.id != accelerator.id:
                    raise InputError(
                        "catalogue.duplicate",
                        f"name {name!r} is used by both {other.id!r} and {accelerator.id!r}",
                    )
                self._by_name[key] = accelerator
        if not self._by_id:
            raise InputError("catalogue.empty", "catalogue lists no accelerators")
        self._by_short = self._short_names()

    def _short_names(self) -> dict[str, Accelerator]:
        """Names without the manufacturer's prefix ("H800 SXM5"), where that is unambiguous."""
        short: dict[str, Accelerator | None] = {}
        for key, accelerator in self._by_name.items():
            prefix = _normalise(accelerator.manufacturer) + " "
            if key.startswith(prefix):
                name = key.removeprefix(prefix)
                if name in self._by_name:
                    continue
                seen = short.setdefault(name, accelerator)
                if seen is not None and seen.id != accelerator.id:
                    short[name] = None
        return {name: a for name, a in short.items() if a is not None}

    def __iter__(self) -> Iterator[Accelerator]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _normalise(name)
        return key in self._by_name or key in self._by_short

    def get(self, name: str) -> Accelerator:
        """The accelerator called ``name`` (id, Epoch name, alias or NVML name; case, spaces
        and punctuation do not matter).

        Raises:
            InputError: ``catalogue.accelerator_unknown``, suggesting the closest names.
        """
        key = _normalise(name) if isinstance(name, str) else ""
        found = self._by_name.get(key) or self._by_short.get(key)
        if found is not None:
            return found
        close = difflib.get_close_matches(_normalise(str(name)), list(self._by_name), n=6)
        ids = list(dict.fromkeys(self._by_name[c].id for c in close))[:3]
        hint = f"; did you mean {', '.join(repr(i) for i in ids)}?"
        raise InputError(
            "catalogue.accelerator_unknown",
            f"unknown accelerator {name!r}" + (hint if close else ""),
            remediation="Run `brakepedal estimate --list-accelerators` for the known names.",
        )

    @property
    def reference(self) -> Accelerator:
        """The H100 SXM5 that "H100-equivalents" are counted in."""
        return self.get(REFERENCE_ACCELERATOR)


def _optional_int(record: Mapping[str, Any], key: str, where: str) -> int | None:
    value = record.get(key)
    if value is None:
        return None
    return _decimal_int(value, f"{where}.{key}")


def _decimal_int(value: object, where: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,24}", value):
        return int(value)
    raise InputError("catalogue.field_invalid", f"{where}: expected a decimal integer string")


_RECORD_FIELDS = frozenset(
    {
        "id",
        "name",
        "manufacturer",
        "peak_ops_per_s",
        "memory_bytes",
        "memory_bandwidth_bytes_per_s",
        "tdp_watts",
        "release_date",
        "nvml_names",
        "aliases",
        "sources",
    }
)


def _accelerator_from_record(record: object, where: str) -> Accelerator:
    if not isinstance(record, dict):
        raise InputError("catalogue.field_invalid", f"{where}: expected an object")
    unknown = sorted(set(record) - _RECORD_FIELDS)
    if unknown:
        raise InputError("catalogue.unknown_field", f"{where}.{unknown[0]}: unknown field")
    peak_record = record.get("peak_ops_per_s")
    if not isinstance(peak_record, dict):
        raise InputError("catalogue.field_invalid", f"{where}.peak_ops_per_s: expected an object")
    peak: dict[Precision, int] = {}
    for key, value in peak_record.items():
        try:
            precision = Precision(key)
        except ValueError:
            raise InputError(
                "catalogue.precision_unknown", f"{where}.peak_ops_per_s.{key}: unknown precision"
            ) from None
        peak[precision] = _decimal_int(value, f"{where}.peak_ops_per_s.{key}")
    strings = {}
    for key in ("id", "name", "manufacturer"):
        value = record.get(key)
        if not isinstance(value, str) or not value:
            raise InputError("catalogue.field_invalid", f"{where}.{key}: expected a string")
        strings[key] = value
    lists = {}
    for key in ("nvml_names", "aliases"):
        value = record.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise InputError("catalogue.field_invalid", f"{where}.{key}: expected strings")
        lists[key] = tuple(value)
    sources = record.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise InputError("catalogue.field_invalid", f"{where}.sources: expected strings")
    release = record.get("release_date")
    if release is not None and not isinstance(release, str):
        raise InputError("catalogue.field_invalid", f"{where}.release_date: expected a string")
    return Accelerator(
        id=strings["id"],
        name=strings["name"],
        manufacturer=strings["manufacturer"],
        peak=peak,
        memory_bytes=_optional_int(record, "memory_bytes", where),
        memory_bandwidth_bytes_per_s=_optional_int(record, "memory_bandwidth_bytes_per_s", where),
        tdp_watts=_optional_int(record, "tdp_watts", where),
        release_date=release,
        nvml_names=lists["nvml_names"],
        aliases=lists["aliases"],
        sources=sources,
    )


def parse_catalogue(data: bytes) -> Catalogue:
    """Parse a catalogue file (the format ``scripts/build_catalogue.py`` writes).

    Raises:
        InputError: ``catalogue.*`` naming the field, for anything malformed.
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError("catalogue.invalid", f"catalogue is not JSON: {e}") from e
    if not isinstance(document, dict) or document.get("format") != CATALOGUE_FORMAT:
        raise InputError("catalogue.format_invalid", f"catalogue: format is not {CATALOGUE_FORMAT}")
    records = document.get("accelerators")
    if not isinstance(records, list):
        raise InputError("catalogue.field_invalid", "catalogue.accelerators: expected a list")
    version = document.get("version")
    citation = document.get("citation")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError("catalogue.version_invalid", "catalogue.version: expected an integer")
    if not isinstance(citation, str):
        raise InputError("catalogue.citation_missing", "catalogue.citation: expected a string")
    accelerators = [
        _accelerator_from_record(record, f"accelerators[{index}]")
        for index, record in enumerate(records)
    ]
    return Catalogue(version, citation, accelerators)


@cache
def default_catalogue() -> Catalogue:
    """The catalogue shipped with this version of brakepedal."""
    data = resources.files("brakepedal.accounting").joinpath("data/accelerators.json").read_bytes()
    return parse_catalogue(data)
