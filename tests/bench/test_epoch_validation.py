"""bench/epoch_validation.py: its note parsers on real Epoch AI snippets, and one full run.

The snippets are quoted from Epoch AI's notable-models export (CC BY 4.0). The full run needs
the export under ``../shared/data/epoch_ai_models`` and is skipped without it. bench/ is not a
package: ``conftest.py`` puts it on ``sys.path`` so that its modules import by their bare names.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from epoch_estimates import Estimate, estimate_6nd, estimate_hardware
from epoch_parsing import (
    active_parameters,
    chip_hours,
    mentions_sparsity,
    method_group,
    precision_for,
    row_from_record,
    tokens_seen,
)
from epoch_validation import DEFAULT_DATA, METHODS, NOTABLE
from hypothesis import given
from hypothesis import strategies as st

from brakepedal.accounting.catalogue import Precision, default_catalogue

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "epoch_validation.py"
DATA = DEFAULT_DATA
HAS_DATA = all((DATA / name).is_file() for name in (NOTABLE, METHODS))
WITHIN_2X = math.log10(2)
B = 10**9

ACTIVE_PARAMETERS = [
    pytest.param(
        [
            "Mixture-of-Experts (MoE) language model with 671B total parameters with 37B "
            "activated for each token."
        ],
        37 * B,
        id="DeepSeek-V3 parameters notes",
    ),
    pytest.param(
        ["6 * 37B (active params) * 14.8T = 3.2856e24 for pretraining."],
        37 * B,
        id="DeepSeek-V3 compute notes",
    ),
    pytest.param(
        ["355 billion total parameters with 32 billion active parameters"], 32 * B, id="GLM-4.5"
    ),
    pytest.param(
        ["Total parameters: 100B (Sparse), Active parameters: 10B per token."], 10 * B, id="VAETKI"
    ),
    pytest.param(
        ["MoE Architecture, Total parameters 519B, Active parameters 33B"], 33 * B, id="A.X K1"
    ),
    pytest.param(["Total Parameters\t1T Activated Parameters\t32B"], 32 * B, id="Kimi K2 Thinking"),
    pytest.param(
        ["a total of 389 billion parameters and 52 billion activation parameters"],
        52 * B,
        id="Hunyuan-Large",
    ),
    pytest.param(
        ["132B mixture of experts. 36B parameters active per inference"], 36 * B, id="DBRX"
    ),
    pytest.param(["94B active/398B total"], 94 * B, id="Jamba 1.5-Large"),
    pytest.param(
        ["Mixture of experts model. 21B parameters activated per token."],
        21 * B,
        id="DeepSeek-Coder-V2",
    ),
    pytest.param(
        ["The network activates 96.6 billion parameters per token and trained for 600B tokens."],
        96_600_000_000,
        id="GLaM",
    ),
    pytest.param(
        ["30.5 billion total parameters, with only 3.3 billion activated per token"],
        3_300_000_000,
        id="Tongyi DeepResearch",
    ),
    pytest.param(
        ["a 288 billion active parameter model with 16 experts"], 288 * B, id="Llama 4 Behemoth"
    ),
    pytest.param(["", "Qwen3-Coder-480B-A35B"], 35 * B, id="name 480B-A35B"),
    pytest.param(
        ["Thinker MoE Transformer 30B-A3B Talker MoE Transformer 3B-A0.3B"],
        3 * B,
        id="Qwen3-Omni: the first statement wins",
    ),
    pytest.param(
        [
            "MoE architecture",
            "Qwen3-Max",
            "36T tokens ... 70B active params is based on it having >1T params",
        ],
        70 * B,
        id="texts searched in order",
    ),
    pytest.param(
        ["With 25%*314B params active per forward pass"],
        None,
        id="Grok-1: a share of the total is not a count",
    ),
    pytest.param(["Also, 6 * 405B * 15.6T training tokens = 3.8e25"], None, id="dense 6ND"),
    pytest.param(
        ["we trained a 540-billion parameter, densely activated, Transformer"],
        None,
        id="PaLM: densely activated",
    ),
    pytest.param(["14.2e9 active parameters * 66e9 tokens"], None, id="no scale word"),
]


@pytest.mark.parametrize(("texts", "expected"), ACTIVE_PARAMETERS)
def test_active_parameters(texts: list[str], expected: int | None) -> None:
    assert active_parameters(texts) == expected


@pytest.mark.parametrize(
    ("text", "sparse"),
    [
        pytest.param("Combining expert, model and data parallelism", True, id="Switch"),
        pytest.param("it's called ST-MoE-32B because", True, id="ST-MoE"),
        pytest.param("a Sparsely Gated Mixture of Experts layer", True, id="NLLB"),
        pytest.param("405B", False, id="Llama 3.1"),
        pytest.param("a 540-billion parameter, densely activated", False, id="PaLM"),
    ],
)
def test_mentions_sparsity(text: str, sparse: bool) -> None:
    assert mentions_sparsity([text]) is sparse


CHIP_HOURS = [
    pytest.param(
        '"At an economical cost of only 2.664M H800 GPU hours, we complete the pre-training '
        "of DeepSeek-V3 on 14.8T tokens [...] The subsequent training stages after "
        'pre-training require only 0.1M GPU hours."',
        Fraction(2_764_000),
        id="DeepSeek-V3 compute notes: stages add up",
    ),
    pytest.param(
        '"DeepSeek-V3 requires only 2.788M H800 GPU hours for its full training"',
        Fraction(2_788_000),
        id="DeepSeek-V3 training time notes",
    ),
    pytest.param(
        '"The training run for gpt-oss-120b required 2.1\nmillion H100-hours"',
        Fraction(2_100_000),
        id="gpt-oss: million on the next line",
    ),
    pytest.param(
        "Llama 2-7B: 184320 GPU-hours [...] so 184320 GPU-hours * 3600",
        Fraction(184_320),
        id="Llama 2: a repeated figure counts once",
    ),
    pytest.param(
        "6.4M GPU-hours [...] 6.4 million GPU hours",
        Fraction(6_400_000),
        id="Llama 3: the same figure in other words",
    ),
    pytest.param("a cumulative of 51968 GPU hours of computation", Fraction(51_968), id="NLLB"),
    pytest.param("4.2k V100-hours (table 1)", Fraction(4_200), id="Once for All"),
    pytest.param("96 * 9 days * sqrt(1000) ~= 655730 chip-hours.", Fraction(655_730), id="GNMT"),
    pytest.param("1,300,000 GPU hours", Fraction(1_300_000), id="thousands separators"),
    pytest.param("Trained for a total of 235.5 TPU v3 core-years.", None, id="core-years"),
    pytest.param("30 days on a TPUv3 Pod (2,048 TPU cores)", None, id="cores, not hours"),
    pytest.param("12345678901234567890 GPU hours", None, id="too many digits"),
]


@pytest.mark.parametrize(("text", "expected"), CHIP_HOURS)
def test_chip_hours(text: str, expected: Fraction | None) -> None:
    assert chip_hours(text) == expected


@given(st.text(alphabet=st.sampled_from("0123456789.,%*kKMBT -active paramsGPUhours\n")))
def test_note_parsers_never_raise(text: str) -> None:
    active = active_parameters([text])
    hours = chip_hours(text)
    assert active is None or active >= 0
    assert hours is None or hours >= 0


@pytest.mark.parametrize(
    ("methods", "group"),
    [
        ("Hardware", "Hardware"),
        ("Operation counting", "Operation counting"),
        ("Operation counting,Hardware", "Hardware + Operation counting"),
        ("Hardware,Operation counting,Third-party estimation", "Hardware + Operation counting"),
        ("Reported,Operation counting", "other"),
        ("Third-party estimation", "other"),
        ("", "unknown method"),
        (None, "unknown method"),
    ],
)
def test_method_group(methods: str | None, group: str) -> None:
    assert method_group(methods) == group


@pytest.mark.parametrize(
    ("chip", "numerical_format", "precision"),
    [
        ("NVIDIA H800 SXM5", "FP8", Precision.FP8),
        ("NVIDIA H100 SXM5 80GB", "BF16", Precision.BF16),
        ("NVIDIA Tesla V100 DGXS 32 GB", "FP16", Precision.BF16),
        ("NVIDIA Tesla V100 DGXS 32 GB", "", Precision.BF16),
        ("NVIDIA A100", "TF32", Precision.TF32),
        ("NVIDIA P100", "", Precision.FP32),
        ("NVIDIA P100", "FP16", Precision.FP16),
        ("Google TPU v3", "FP32", Precision.BF16),
        ("NVIDIA A100", "Unknown", Precision.BF16),
    ],
)
def test_precision_for(chip: str, numerical_format: str, precision: Precision) -> None:
    accelerator = default_catalogue().get(chip)
    assert precision_for(numerical_format, accelerator) == precision


LLAMA_31_405B = {
    "Model": "Llama 3.1-405B",
    "Domain": "Language",
    "Confidence": "Confident",
    "Frontier model": "checked",
    "Parameters": "405000000000.0",
    "Parameters notes": "405B",
    "Training compute (FLOP)": "3.8e+25",
    "Training compute notes": "Stated in paper.\n\nAlso, 6 * 405B * 15.6T training tokens",
    "Training dataset size (total)": "15600000000000",
    "Epochs": "1.00",
    "Training time (hours)": "2142.0",
    "Training hardware": "NVIDIA H100 SXM5 80GB",
    "Hardware quantity": "16384",
    "Hardware utilization (MFU)": "0.4042",
    "Numerical format": "BF16",
}


def test_both_routes_on_one_record() -> None:
    methods = {"Llama 3.1-405B": "Reported,Operation counting"}
    row = row_from_record(LLAMA_31_405B, methods)
    assert row.method == "other"
    six_nd = estimate_6nd(row)
    assert isinstance(six_nd, Estimate)
    assert six_nd.our_flop == float(6 * 405 * B * 15_600 * B)
    hardware = estimate_hardware(row, default_catalogue(), Fraction(3, 10))
    assert isinstance(hardware, Estimate)
    peak = default_catalogue().get("NVIDIA H100 SXM5 80GB").peak_at(Precision.BF16)
    expected = math.ceil(16384 * Fraction(2142) * 3600 * peak * Fraction("0.4042"))
    assert hardware.our_flop == float(expected)
    assert hardware.utilisation == "reported"


def test_tokens_seen_multiplies_epochs() -> None:
    record = {**LLAMA_31_405B, "Training dataset size (total)": "103000000", "Epochs": "250"}
    row = row_from_record(record, {})
    assert tokens_seen(row) == 103_000_000 * 250


def test_no_data_is_a_skip_not_a_failure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--check", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0
    assert "not found" in result.stdout


@pytest.mark.skipif(not HAS_DATA, reason=f"Epoch AI export not found in {DATA}")
def test_bench_check_passes_on_epoch_data(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--check", "--json", str(report)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    named = {n["model"]: n for n in json.loads(report.read_text())["named"]}
    for model in ("Llama 3.1-405B", "DeepSeek-V3"):
        assert named[model]["gated"]
        assert named[model]["passed"]
        assert abs(named[model]["log10_6nd"]) <= WITHIN_2X
        assert abs(named[model]["log10_hardware"]) <= WITHIN_2X
