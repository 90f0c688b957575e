"""Open mode closed to web pages, and body limits, over real HTTP and WebSocket.

A uvicorn server on a loopback port, as `roadlens serve` runs it; requests are sent the way a
browser page (foreign ``Origin``), a DNS-rebinding page (foreign ``Host``) or a flood (huge
bodies) would send them.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from roadlens.service import ServiceSettings, create_app
from roadlens.service.testing import ServerThread

SOURCE = {"name": "evilcam", "url": "rtsp://127.0.0.1:1/x"}


def _settings(home: Path, **overrides: object) -> ServiceSettings:
    values: dict[str, object] = dict(
        home=home, lake_root=home / "lake", landing=home / "landing", poll_s=0.2
    )
    return ServiceSettings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("open-home")
    with ServerThread(create_app(_settings(home, max_body_bytes=64 * 1024))) as running:
        yield running


def test_open_mode_refuses_a_foreign_host_header(open_server) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    answer = httpx.post(f"{open_server.url}/sources", json=SOURCE, headers={"Host": "evil.example"})
    assert answer.status_code == 403
    assert "evil.example" in answer.json()["detail"]
    names = [s["name"] for s in httpx.get(f"{open_server.url}/sources").json()]
    assert "evilcam" not in names
    for host in ("127.0.0.1", "localhost"):
        port = open_server.url.rsplit(":", 1)[1]
        ok = httpx.get(f"{open_server.url}/health", headers={"Host": f"{host}:{port}"})
        assert ok.status_code == 200


def test_open_mode_refuses_requests_from_other_origins(open_server) -> None:
    evil = httpx.post(
        f"{open_server.url}/sources", json=SOURCE, headers={"Origin": "http://evil.example"}
    )
    assert evil.status_code == 403 and "evil.example" in evil.json()["detail"]
    # The dashboard itself (same loopback origin) and scripts without Origin are served.
    same = httpx.get(f"{open_server.url}/health", headers={"Origin": open_server.url})
    assert same.status_code == 200
    assert httpx.get(f"{open_server.url}/health").status_code == 200


def test_open_mode_refuses_websockets_from_other_origins(open_server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(open_server.ws_url, additional_headers={"Origin": "http://evil.example"})
    assert refused.value.response.status_code == 403
    with connect(open_server.ws_url, additional_headers={"Origin": open_server.url}) as ws:
        ws.ping()


def test_large_bodies_get_413_without_being_read_or_echoed(open_server) -> None:
    big = b'{"name": "' + b"x" * 200_000 + b'"}'
    declared = httpx.post(
        f"{open_server.url}/sources", content=big, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert len(declared.content) < 300 and b"xxxx" not in declared.content

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(50):
            yield b"x" * 10_000

    streamed = httpx.post(
        f"{open_server.url}/sources", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413 and b"xxxx" not in streamed.content


def test_validation_errors_never_echo_the_body(open_server) -> None:
    secret = "p" * 5_000
    answer = httpx.post(f"{open_server.url}/sources", json={"name": 7, "url": secret})
    assert answer.status_code == 422
    assert secret not in answer.text and len(answer.content) < 2_000
    assert answer.json()["detail"][0]["loc"]


def test_keyed_mode_caps_bodies_before_the_key_is_checked(tmp_path: Path) -> None:
    settings = _settings(tmp_path, api_keys="k-admin:admin", max_body_bytes=1024)
    with ServerThread(create_app(settings)) as srv:
        answer = httpx.post(f"{srv.url}/sources", content=b"x" * 100_000)
        assert answer.status_code == 413
        # Keys, not Host or Origin, guard keyed mode (it may sit behind a proxy).
        ok = httpx.get(
            f"{srv.url}/health", headers={"Host": "roadlens.example", "Origin": "https://x.example"}
        )
        assert ok.status_code == 200


def test_unknown_query_parameters_are_refused_not_ignored(open_server) -> None:
    typo = httpx.get(f"{open_server.url}/events", params={"sorce": "cam-1", "limit": 5})
    assert typo.status_code == 400
    assert "sorce" in typo.json()["detail"] and "source" in typo.json()["detail"]
    good = httpx.get(f"{open_server.url}/stats", params={"table": "events", "bin_minutes": 5})
    assert good.status_code == 200
