"""``brakepedal estimate`` end to end, in process."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from brakepedal.cli import app
from brakepedal.cli.output import EXIT_INPUT

RUNNER = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = RUNNER.invoke(app, ["estimate", *args], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output + result.stderr
    return result.stdout + result.stderr


def test_llama_405b_both_routes_and_implied_utilisation() -> None:
    output = run(
        "--params",
        "405B",
        "--tokens",
        "15.6T",
        "--hardware",
        "NVIDIA H100 80GB HBM3",
        "--count",
        "16384",
        "--hours",
        "2142",
        "--utilisation",
        "0.4",
        "--json",
    )
    document = json.loads(output)
    flops = {route["route"]: int(route["flop"]) for route in document["routes"]}
    assert flops["6·N·D"] == 6 * 405 * 15_600 * 10**18
    assert flops["hardware capacity"] == 16384 * 2142 * 3600 * 989_400_000_000_000
    assert flops["hardware estimate"] == flops["hardware capacity"] * 4 // 10
    assert document["implied_utilisation"] == f"{flops['6·N·D'] / flops['hardware capacity']:.6f}"


def test_device_hours_and_inference() -> None:
    document = json.loads(
        run(
            "--active-params",
            "37B",
            "--inference-tokens",
            "1M",
            "--hardware",
            "H800 SXM5",
            "--device-hours",
            "2.788M",
            "--precision",
            "fp8",
            "--json",
        )
    )
    flops = {route["route"]: int(route["flop"]) for route in document["routes"]}
    assert flops["2·N per token"] == 2 * 37 * 10**9 * 10**6
    assert flops["hardware capacity"] == 2_788_000 * 3600 * 1_979_000_000_000_000
    assert document["implied_utilisation"] is None


def test_table_output_warns_when_the_count_exceeds_the_hardware() -> None:
    output = run(
        "--params", "1T", "--tokens", "100T", "--hardware", "H100", "--count", "8", "--hours", "1"
    )
    assert "utilisation" in output
    assert "unattested hardware" in output


def test_list_accelerators_cites_epoch() -> None:
    output = run("--list-accelerators")
    assert "NVIDIA H100 80GB HBM3" in output
    assert "Epoch AI" in output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((), "estimate.nothing_to_do"),
        (("--tokens", "1T"), "estimate.params_missing"),
        (("--params", "ten", "--tokens", "1T"), "quantity.format_invalid"),
        (
            ("--hardware", "H100 SXM6", "--count", "1", "--hours", "1"),
            "catalogue.accelerator_unknown",
        ),
        (("--hardware", "H100", "--count", "1"), "estimate.hardware_incomplete"),
        (("--hardware", "H100", "--hours", "1", "--device-hours", "5"), "estimate.time_ambiguous"),
        (
            ("--hardware", "A100", "--count", "1", "--hours", "1", "--precision", "fp8"),
            "catalogue.precision_unknown",
        ),
        (
            ("--hardware", "H100", "--count", "1", "--hours", "1", "--utilisation", "1.5"),
            "estimate.utilisation_invalid",
        ),
    ],
)
def test_bad_estimate_arguments_name_the_problem(args: tuple[str, ...], reason: str) -> None:
    assert f"reason: {reason}" in run(*args, code=EXIT_INPUT)


def test_zero_active_parameters_are_not_replaced_by_the_total() -> None:
    document = json.loads(
        run("--params", "405B", "--active-params", "0", "--tokens", "1T", "--json")
    )
    assert document["routes"][0]["flop"] == "0"
