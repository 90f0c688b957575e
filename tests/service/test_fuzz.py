"""schemathesis fuzzes every operation of the OpenAPI schema against a real server with an
admin key and a filled lake: no input, valid or deliberately invalid, may produce a 5xx.

Starting recorders is left out (fuzzed URLs would launch ffmpeg against random hosts);
``tests/service/test_api.py`` covers it. Each operation gets ``max_examples=20`` per
generation mode (positive: inputs the schema allows; negative: inputs it forbids).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from roadlens.service import ServiceSettings, create_app
from roadlens.service.testing import ServerThread
from tests.service.test_api import fill_lake

KEY = "fuzz-admin-key"


def _config(home: Path) -> ServiceSettings:
    return ServiceSettings(
        home=home,
        lake_root=home / "lake",
        landing=home / "landing",
        api_keys=f"{KEY}:admin",
        rate_per_s=10_000.0,
        burst=10_000.0,
    )


# The schema comes from the app itself (the same one the server serves at /openapi.json,
# checked below), so the operations are known when pytest collects the tests.
with tempfile.TemporaryDirectory() as _home:
    SPEC = create_app(_config(Path(_home))).openapi()
SCHEMA = schemathesis.openapi.from_dict(SPEC).exclude(path_regex=r"/start$")
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}
# Negative cases need something to break: operations without parameters or body have none.
CASES = [
    (label, mode)
    for label, op in sorted(OPERATIONS.items())
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE
    or SPEC["paths"][op.path][op.method.lower()].get("parameters")
    or SPEC["paths"][op.path][op.method.lower()].get("requestBody")
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory):
    home: Path = tmp_path_factory.mktemp("fuzz-home")
    fill_lake(home / "lake")
    with ServerThread(create_app(_config(home))) as server:
        body = {"name": "fuzz cam", "url": "rtsp://viewer:pw@cam/x", "rules_path": "r.yaml"}
        httpx.post(
            f"{server.url}/sources", json=body, headers={"X-API-Key": KEY}
        ).raise_for_status()
        yield server


def test_served_schema_is_the_fuzzed_one(fuzz_server) -> None:
    assert httpx.get(f"{fuzz_server.url}/openapi.json").json() == SPEC
    assert len(OPERATIONS) >= 15


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_no_input_produces_a_server_error(fuzz_server, label: str, mode: GenerationMode) -> None:
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(case) -> None:
        response = case.call(base_url=fuzz_server.url, headers={"X-API-Key": KEY}, timeout=30)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} query={case.query} body={case.body!r} -> "
            f"{response.status_code}: {response.text[:300]}"
        )

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_patching_an_existing_source_never_produces_a_server_error(fuzz_server, mode) -> None:
    """Random ids mostly miss; here every fuzzed body goes to a source that exists."""
    operation = OPERATIONS["PATCH /sources/{source_id}"]
    strategy = operation.as_strategy(
        generation_mode=mode, path_parameters={"source_id": "fuzz-cam"}
    )

    @given(case=strategy)
    @settings(
        max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(case) -> None:
        response = case.call(base_url=fuzz_server.url, headers={"X-API-Key": KEY}, timeout=30)
        assert response.status_code in (200, 400, 422), (
            f"PATCH body={case.body!r} -> {response.status_code}: {response.text[:300]}"
        )
        got = httpx.get(f"{fuzz_server.url}/sources/fuzz-cam", headers={"X-API-Key": KEY})
        assert got.status_code == 200  # the registry is still readable after any body

    check()
