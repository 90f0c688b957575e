"""The shared settings facts: the ROADLENS_HOME default and numeric environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from roadlens.service.settings import ServiceSettings
from roadlens.settings import DEFAULT_HOME, HOME_ENV, env_number, roadlens_home
from roadlens.sinks.settings import SinkSettings
from roadlens.sinks.state import default_state_dir
from roadlens_dagster.assets.quality import max_quarantine_share
from roadlens_dagster.orchestration.sensors.landing import (
    max_queued_microbatches,
    sensor_interval_s,
)
from roadlens_dagster.resources import LakeResource


def test_home_defaults_to_a_folder_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_HOME == ".roadlens"
    assert roadlens_home() == tmp_path.resolve() / ".roadlens"
    assert roadlens_home({}) == tmp_path.resolve() / ".roadlens"
    assert roadlens_home({HOME_ENV: "rel/home"}) == tmp_path.resolve() / "rel" / "home"


def test_every_reader_of_the_home_agrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.delenv("ROADLENS_LAKE", raising=False)
    monkeypatch.delenv("ROADLENS_LANDING", raising=False)
    assert roadlens_home() == home
    assert default_state_dir() == home / "sink-state"
    assert LakeResource().lake().root == home / "lake"
    assert Path(SinkSettings.from_env().spool_dir) == home / "spool"
    service = ServiceSettings.from_env()
    assert (service.home, service.lake_root, service.landing) == (
        home,
        home / "lake",
        home / "landing",
    )
    # A caller's own mapping wins over the process environment.
    other = tmp_path / "other"
    assert ServiceSettings.from_env({HOME_ENV: str(other)}).home == other
    assert Path(SinkSettings.from_env({HOME_ENV: str(other)}).spool_dir) == other / "spool"


def test_env_number_reads_and_defaults() -> None:
    assert env_number("X", 7, env={}) == 7
    assert env_number("X", 7, env={"X": "  "}) == 7
    assert env_number("X", 7, env={"X": " 12 "}) == 12
    assert isinstance(env_number("X", 7, env={"X": "12"}), int)
    assert env_number("X", 0.5, kind=float, env={"X": "1e-3"}) == 0.001
    assert env_number("X", 20.0, kind=float, above=0, env={"X": "inf"}) == float("inf")
    assert env_number("X", 0.05, kind=float, minimum=0, maximum=1, env={"X": "1"}) == 1.0


def test_env_number_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADLENS_TEST_NUMBER", "3")
    assert env_number("ROADLENS_TEST_NUMBER", 1) == 3
    assert os.environ["ROADLENS_TEST_NUMBER"] == "3"


@pytest.mark.parametrize(
    ("raw", "kwargs", "expected"),
    [
        ("fast", {"minimum": 1}, "expected a whole number >= 1"),
        ("2.5", {"minimum": 1}, "expected a whole number >= 1"),
        ("0", {"minimum": 1}, "expected a whole number >= 1"),
        ("-1", {"minimum": 0}, "expected a whole number >= 0"),
        ("11", {"maximum": 10}, "expected a whole number <= 10"),
        ("11", {"minimum": 1, "maximum": 10}, "expected a whole number in [1, 10]"),
        ("2", {"kind": float, "minimum": 0, "maximum": 1}, "expected a number in [0, 1]"),
        ("nan", {"kind": float, "minimum": 0, "maximum": 1}, "expected a number in [0, 1]"),
        ("0", {"kind": float, "above": 0}, "expected a number > 0"),
        ("0", {"kind": float, "above": 0, "maximum": 2.5}, "expected a number in (0, 2.5]"),
        ("nan", {"kind": float}, "expected a number"),
    ],
)
def test_env_number_errors_name_the_variable_the_value_and_the_range(
    raw: str, kwargs: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValueError) as info:
        env_number("ROADLENS_SOMETHING", 1, env={"ROADLENS_SOMETHING": raw}, **kwargs)
    assert str(info.value) == f"ROADLENS_SOMETHING={raw!r}: {expected}"


def test_env_number_refuses_two_lower_bounds() -> None:
    with pytest.raises(TypeError):
        env_number("X", 1, minimum=0, above=0, env={})


def test_the_callers_keep_their_defaults_and_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sensor_interval_s({}) == 15
    assert max_queued_microbatches({}) == 1
    monkeypatch.delenv("ROADLENS_MAX_QUARANTINE_SHARE", raising=False)
    assert max_quarantine_share() == 0.05
    monkeypatch.setenv("ROADLENS_MAX_QUARANTINE_SHARE", "2")
    with pytest.raises(ValueError, match=r"ROADLENS_MAX_QUARANTINE_SHARE='2': .*\[0, 1\]"):
        max_quarantine_share()
    env = {HOME_ENV: "/srv/x", "ROADLENS_WS_QUEUE_MB": "2", "ROADLENS_WS_QUEUE": "2.5"}
    service = ServiceSettings.from_env(env)
    assert (service.rate_per_s, service.burst, service.poll_s) == (20.0, 40.0, 0.5)
    assert (service.ws_queue, service.ws_queue_bytes) == (2, 2 << 20)
    for name in ("ROADLENS_API_RATE", "ROADLENS_WS_POLL_S", "ROADLENS_MAX_BODY_BYTES"):
        for bad in ("0", "-1", "many"):
            with pytest.raises(ValueError, match=f"{name}='{bad}': expected a number > 0"):
                ServiceSettings.from_env({**env, name: bad})
