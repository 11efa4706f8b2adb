"""schemathesis against the registry's OpenAPI document: no input makes a server error.

The registry is served over real HTTP (SQLite and PostgreSQL), holding an enrolled device and
its reports, so generated calls reach stored data as well as the error paths.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from brakepedal.registry.service import Registry
from tests.unit.registry.conftest import Device, Server, batch


@pytest.mark.slow
def test_no_server_errors(registry: Registry, server: Server) -> None:
    gpu = Device("gpu-0")
    server.client.post("/v1/devices", content=gpu.enrolment())
    server.client.post("/v1/reports", content=batch(gpu.report(), gpu.report()))
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here: good
        tested.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            case.call_and_validate(base_url=server.url, checks=[not_a_server_error])

        call()
    assert len(tested) >= 20, tested
