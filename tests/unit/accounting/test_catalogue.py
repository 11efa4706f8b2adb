"""The shipped accelerator catalogue: its data, lookups, parser rejections and peak properties."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.accounting.catalogue import (
    CATALOGUE_FORMAT,
    REFERENCE_ACCELERATOR,
    Accelerator,
    Precision,
    default_catalogue,
    parse_catalogue,
)
from brakepedal.errors import InputError

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "build_catalogue.py"
EPOCH_CSV = ROOT.parent / "shared" / "data" / "epoch_ml_hardware" / "ml_hardware_2025-12.csv"

#: Rows of ml_hardware_2025-12.csv with a peak rate (170 rows, 2 without any).
EXPECTED_ACCELERATORS = 168
TERA = 10**12

#: NVIDIA accelerators released in 2022 or later, with a 16-bit tensor rate but no FP8 rate.
FP8_EXCEPTIONS = frozenset(
    {
        # Ampere: no FP8 in the hardware.
        "nvidia-a800-pcie-40-gb",
        "nvidia-a800-pcie-80-gb",
        "nvidia-a800-sxm",
        "nvidia-geforce-rtx-3090-ti",
        # Hopper/Ada parts sold in China without a public NVIDIA datasheet to take FP8 from.
        "nvidia-hgx-h20",
        "nvidia-l2-pcle",
        "nvidia-l20-pcle",
        # Epoch's row for the GH100 die rather than a product; not filled in.
        "nvidia-gh100",
    }
)

#: What nvmlDeviceGetName reports -> the catalogue id it must resolve to.
NVML_EXPECTED = {
    "NVIDIA H100 80GB HBM3": "nvidia-h100-sxm5-80gb",
    "NVIDIA H100 PCIe": "nvidia-h100-pcie",
    "NVIDIA H100 NVL": "nvidia-h100-nvl",
    "NVIDIA H800": "nvidia-h800-sxm5",
    "NVIDIA H200": "nvidia-h200-sxm",
    "NVIDIA GH200 480GB": "nvidia-gh200",
    "NVIDIA A100-SXM4-80GB": "nvidia-a100-sxm4-80-gb",
    "NVIDIA A100-SXM4-40GB": "nvidia-a100-sxm4-40-gb",
    "NVIDIA A100-PCIE-40GB": "nvidia-a100-pcie",
    "NVIDIA A100 80GB PCIe": "nvidia-a100-pcie",
    "NVIDIA B200": "nvidia-b200",
    "NVIDIA GB200": "nvidia-gb200",
    "NVIDIA L4": "nvidia-l4",
    "NVIDIA A10G": "nvidia-a10g",
    "NVIDIA A10": "nvidia-a10-pcie",
    "Tesla V100-SXM2-16GB": "nvidia-tesla-v100-sxm2-16-gb",
    "Tesla V100-SXM2-32GB": "nvidia-tesla-v100-sxm2-32-gb",
    "Tesla V100-PCIE-32GB": "nvidia-tesla-v100-pcie-32-gb",
    "Tesla T4": "nvidia-tesla-t4",
    "NVIDIA GeForce RTX 4090": "nvidia-geforce-rtx-4090",
}

ALIASES_EXPECTED = {
    "H100": "nvidia-h100-sxm5-80gb",
    "H100 SXM": "nvidia-h100-sxm5-80gb",
    "A100": "nvidia-a100",
    "B200": "nvidia-b200",
    "TPU v5p": "google-tpu-v5p",
    "MI300X": "amd-instinct-mi300x",
}


def _shipped_document() -> dict[str, Any]:
    data = resources.files("brakepedal.accounting").joinpath("data/accelerators.json")
    document: dict[str, Any] = json.loads(data.read_bytes())
    return document


def test_default_catalogue_loads_with_version_and_citation() -> None:
    catalogue = default_catalogue()
    assert catalogue.version == 1
    assert "Epoch AI" in catalogue.citation
    assert "CC BY 4.0" in catalogue.citation
    assert len(catalogue) == EXPECTED_ACCELERATORS
    assert len(_shipped_document()["accelerators"]) == len(catalogue)
    assert catalogue.reference.id == REFERENCE_ACCELERATOR


def test_shipped_file_is_canonical_json() -> None:
    data = resources.files("brakepedal.accounting").joinpath("data/accelerators.json")
    raw = data.read_bytes()
    document = json.loads(raw)
    assert raw == (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("ascii")
    assert set(document) == {
        "format",
        "version",
        "citation",
        "licence",
        "source_file",
        "accelerators",
    }
    assert document["source_file"] == EPOCH_CSV.name


def test_h100_sxm5_rates_from_epoch_and_datasheet() -> None:
    h100 = default_catalogue().get(REFERENCE_ACCELERATOR)
    assert h100.peak_at(Precision.BF16) == 989_400_000_000_000
    assert "bf16" not in h100.sources  # Epoch's own figure
    assert h100.peak_at(Precision.FP8) == 1_979_000_000_000_000
    assert "3,958" in h100.sources["fp8"]
    assert h100.sources["fp8"].startswith("https://")
    assert h100.memory_bytes == 80_000_000_000
    assert h100.tdp_watts == 700


@pytest.mark.parametrize("name", ["NVIDIA H100 80GB HBM3", "nvidia h100 80gb hbm3", "H100 SXM"])
def test_h100_lookup_by_nvml_name_case_and_alias(name: str) -> None:
    assert default_catalogue().get(name).id == "nvidia-h100-sxm5-80gb"


@pytest.mark.parametrize(
    ("name", "expected"), sorted({**NVML_EXPECTED, **ALIASES_EXPECTED}.items())
)
def test_nvml_names_and_aliases_resolve(name: str, expected: str) -> None:
    catalogue = default_catalogue()
    assert name in catalogue
    assert catalogue.get(name).id == expected


def test_a100_b200_spot_values() -> None:
    catalogue = default_catalogue()
    assert catalogue.get("NVIDIA A100-SXM4-80GB").peak_at(Precision.TF32) == 156 * TERA
    assert catalogue.get("NVIDIA A100-SXM4-80GB").peak_at(Precision.INT8) == 624 * TERA
    assert catalogue.get("B200").peak_at(Precision.FP8) == 4_500 * TERA


def test_fill_ins_are_dense_halves_with_sources() -> None:
    catalogue = default_catalogue()
    nvl = catalogue.get("NVIDIA H100 NVL")
    assert nvl.peak_at(Precision.BF16) == 835_500_000_000_000
    assert nvl.peak_at(Precision.FP8) == 1_670_500_000_000_000
    assert catalogue.get("NVIDIA H100 PCIe").peak_at(Precision.FP8) == 1_513 * TERA
    assert catalogue.get("NVIDIA H800").peak_at(Precision.FP8) == 1_979 * TERA
    assert catalogue.get("NVIDIA GH200 480GB").peak_at(Precision.FP8) == 1_979 * TERA
    assert catalogue.get("NVIDIA H200").memory_bytes == 141_000_000_000
    for accelerator in (nvl, catalogue.get("NVIDIA H200")):
        assert accelerator.sources


def test_sources_name_a_url_for_a_field_that_is_present() -> None:
    for accelerator in default_catalogue():
        for key, source in accelerator.sources.items():
            assert re.search(r"https://\S+", source), (accelerator.id, key)
            present = key in {p.value for p in accelerator.peak} or (
                getattr(accelerator, key, None) is not None
            )
            assert present, (accelerator.id, key)


def test_recent_nvidia_accelerators_with_bf16_have_fp8() -> None:
    missing = {
        accelerator.id
        for accelerator in default_catalogue()
        if accelerator.manufacturer == "NVIDIA"
        and (accelerator.release_date or "") >= "2022"
        and Precision.BF16 in accelerator.peak
        and Precision.FP8 not in accelerator.peak
    }
    assert missing == FP8_EXCEPTIONS


def test_unknown_name_suggests_near_misses() -> None:
    with pytest.raises(InputError) as raised:
        default_catalogue().get("H100 SXM6")
    assert raised.value.reason == "catalogue.accelerator_unknown"
    assert "did you mean" in raised.value.message
    assert "'nvidia-h100-sxm5-80gb'" in raised.value.message
    suggested = re.findall(r"'([a-z0-9-]+)'", raised.value.message.split("did you mean")[1])
    assert len(suggested) == len(set(suggested))


def test_unknown_name_far_from_everything_has_no_suggestion() -> None:
    with pytest.raises(InputError) as raised:
        default_catalogue().get("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")
    assert raised.value.reason == "catalogue.accelerator_unknown"
    assert "did you mean" not in raised.value.message


def test_h100_equivalents() -> None:
    catalogue = default_catalogue()
    reference = catalogue.reference
    assert reference.h100_equivalents(reference) == 1
    a100 = catalogue.get("NVIDIA A100-SXM4-80GB")
    assert a100.h100_equivalents(reference) == Fraction(312, 1) / Fraction("989.4")


def test_h100_equivalents_takes_the_highest_wide_rate() -> None:
    # A Pascal card quotes FP16 at 1/64 of FP32 and no tensor rate: count its FP32 rate.
    p40 = default_catalogue().get("nvidia-p40")
    assert p40.h100_equivalents(default_catalogue().reference) == Fraction(
        11_760_000_000_000, 989_400_000_000_000
    )


def test_h100_equivalents_needs_a_wide_rate() -> None:
    tpu_v1 = default_catalogue().get("google-tpu-v1")  # INT8 only
    with pytest.raises(InputError) as raised:
        tpu_v1.h100_equivalents(default_catalogue().reference)
    assert raised.value.reason == "catalogue.precision_unknown"


# --- parse_catalogue on bad documents ------------------------------------------------------


def _record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "test-gpu",
        "name": "Test GPU",
        "manufacturer": "Test",
        "peak_ops_per_s": {"bf16": "1000000000000"},
    }
    record.update(changes)
    return record


def _document(*records: dict[str, Any], **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format": CATALOGUE_FORMAT,
        "version": 1,
        "citation": "test citation",
        "accelerators": list(records) if records else [_record()],
    }
    document.update(changes)
    return document


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    smaller = copy.deepcopy(document)
    del smaller[key]
    return smaller


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


BAD_DOCUMENTS: list[tuple[str, bytes, str]] = [
    ("not-json", b"{", "catalogue.invalid"),
    ("not-utf8", b"\xff\xfe\xfa", "catalogue.invalid"),
    ("top-level-list", b"[]", "catalogue.format_invalid"),
    ("wrong-format", _encode(_document(format="other")), "catalogue.format_invalid"),
    ("missing-citation", _encode(_without(_document(), "citation")), "catalogue.citation_missing"),
    ("blank-citation", _encode(_document(citation="  ")), "catalogue.citation_missing"),
    ("version-string", _encode(_document(version="1")), "catalogue.version_invalid"),
    ("version-zero", _encode(_document(version=0)), "catalogue.version_invalid"),
    ("accelerators-object", _encode(_document(accelerators={})), "catalogue.field_invalid"),
    ("record-not-object", _encode(_document(accelerators=["x"])), "catalogue.field_invalid"),
    ("unknown-field", _encode(_document(_record(colour="red"))), "catalogue.unknown_field"),
    (
        "unknown-precision",
        _encode(_document(_record(peak_ops_per_s={"fp6": "1000"}))),
        "catalogue.precision_unknown",
    ),
    (
        "negative-peak",
        _encode(_document(_record(peak_ops_per_s={"bf16": "-1000"}))),
        "catalogue.field_invalid",
    ),
    (
        "zero-peak",
        _encode(_document(_record(peak_ops_per_s={"bf16": "0"}))),
        "catalogue.field_invalid",
    ),
    (
        "non-string-peak",
        _encode(_document(_record(peak_ops_per_s={"bf16": 1000}))),
        "catalogue.field_invalid",
    ),
    (
        "leading-zero-peak",
        _encode(_document(_record(peak_ops_per_s={"bf16": "01000"}))),
        "catalogue.field_invalid",
    ),
    (
        "huge-peak",
        _encode(_document(_record(peak_ops_per_s={"bf16": "1" + "0" * 20}))),
        "catalogue.peak_invalid",
    ),
    ("no-peak", _encode(_document(_record(peak_ops_per_s={}))), "catalogue.peak_missing"),
    ("bad-id", _encode(_document(_record(id="Test GPU"))), "catalogue.id_invalid"),
    ("missing-name", _encode(_document(_without(_record(), "name"))), "catalogue.field_invalid"),
    ("zero-memory", _encode(_document(_record(memory_bytes="0"))), "catalogue.field_invalid"),
    (
        "duplicate-id",
        _encode(_document(_record(), _record(name="Other GPU"))),
        "catalogue.duplicate",
    ),
    (
        "shared-nvml-name",
        _encode(
            _document(
                _record(nvml_names=["NVIDIA Test"]),
                _record(id="other-gpu", name="Other GPU", nvml_names=["nvidia test"]),
            )
        ),
        "catalogue.duplicate",
    ),
    (
        "alias-is-another-name",
        _encode(_document(_record(), _record(id="other-gpu", name="Other", aliases=["TEST-GPU"]))),
        "catalogue.duplicate",
    ),
    ("empty-list", _encode(_document(accelerators=[])), "catalogue.empty"),
]


@pytest.mark.parametrize(
    ("data", "reason"),
    [pytest.param(data, reason, id=name) for name, data, reason in BAD_DOCUMENTS],
)
def test_parse_catalogue_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_catalogue(data)
    assert raised.value.reason == reason


def test_unknown_field_message_names_the_field() -> None:
    with pytest.raises(InputError) as raised:
        parse_catalogue(_encode(_document(_record(colour="red"))))
    assert "accelerators[0].colour" in raised.value.message


def test_parse_catalogue_accepts_a_minimal_document() -> None:
    catalogue = parse_catalogue(_encode(_document()))
    assert len(catalogue) == 1
    assert catalogue.get("test gpu").peak_at(Precision.BF16) == TERA


# --- properties of max_peak ----------------------------------------------------------------

ACCELERATORS = sorted(default_catalogue(), key=lambda accelerator: accelerator.id)


@st.composite
def accelerator_and_precisions(
    draw: st.DrawFn,
) -> tuple[Accelerator, frozenset[Precision], Precision]:
    accelerator = draw(st.sampled_from(ACCELERATORS))
    known = sorted(accelerator.peak)
    subset = draw(st.frozensets(st.sampled_from(known), min_size=1))
    extra = draw(st.sampled_from(list(Precision)))
    return accelerator, subset, extra


@settings(max_examples=300, deadline=None)
@given(accelerator_and_precisions())
def test_max_peak_bounds_each_rate_and_is_monotone(
    case: tuple[Accelerator, frozenset[Precision], Precision],
) -> None:
    accelerator, subset, extra = case
    peak = accelerator.max_peak(subset)
    assert peak in {accelerator.peak_at(p) for p in subset}
    for precision in subset:
        assert peak >= accelerator.peak_at(precision)
    assert accelerator.max_peak(subset | {extra}) >= peak


# --- the build script ------------------------------------------------------------------------


@pytest.mark.skipif(not EPOCH_CSV.exists(), reason=f"Epoch AI export not present at {EPOCH_CSV}")
def test_build_script_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(EPOCH_CSV), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert f"({len(default_catalogue())} accelerators)" in result.stdout


def test_names_without_the_manufacturer_prefix_resolve_when_unambiguous() -> None:
    catalogue = default_catalogue()
    assert catalogue.get("H800 SXM5").id == "nvidia-h800-sxm5"
    assert "h800 sxm5" in catalogue
    assert 42 not in catalogue
