"""The domain package imports no Dagster, and a wheel installed outside the checkout works.

The wheel test builds the project's wheel, installs it into a fresh virtualenv in a temporary
folder (its dependencies come from the running environment through a ``.pth`` path line,
which does not pull in this checkout's editable install) and runs ``roadlens ingest`` on a
real clip, ``roadlens query`` and ``roadlens db upgrade`` from outside the checkout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_data, shared_model

DAGSTER_IMPORT = re.compile(r"^\s*(?:import|from)\s+(?:dagster|roadlens_dagster)\b", re.M)


def test_nothing_in_the_domain_package_imports_dagster() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "roadlens").rglob("*.py"))
        if DAGSTER_IMPORT.search(path.read_text())
    ]
    assert offenders == []
    # Importing the domain command line and the pipeline loads no Dagster module either.
    probe = (
        "import sys, roadlens.cli, roadlens.pipeline, roadlens.ode.stage, roadlens.lake;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'roadlens_dagster')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the checkout with only the project's wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the tracked files: setuptools writes build/ next to the sources.
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    source = root / "source"
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(root / "dist"), str(source)],
        check=True, capture_output=True, cwd=root,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("roadlens-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies (torch, dagster, ...) from this environment, after the wheel's own files.
    Path(purelib, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(
    venv: Path, cwd: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "roadlens"), *args],
        cwd=cwd,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_ingests_queries_and_migrates(
    installed_wheel: Path, tmp_path: Path, postgres_url: str, pg_schema: str
) -> None:
    where = subprocess.run(
        [str(installed_wheel / "bin" / "python"), "-c",
         "import roadlens, roadlens_dagster; print(roadlens.__file__); print(roadlens_dagster.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(installed_wheel) for p in where), where
    clip = tmp_path / "cam" / "dashcam.mp4"
    clip.parent.mkdir()
    clip.symlink_to(shared_data("dashcam.mp4"))
    env = {
        "ROADLENS_HOME": str(tmp_path / "home"),
        "ROADLENS_WEIGHTS": str(shared_model()),
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(tmp_path / "home" / "ultralytics"),
        "HOME": str(tmp_path),
    }
    done = _run(installed_wheel, tmp_path, "ingest", str(clip), env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert (tmp_path / "home" / "dagster" / "dagster.yaml").is_file()  # the packaged config
    query = _run(
        installed_wheel,
        tmp_path,
        "query",
        "SELECT count(*) AS n FROM detections",
        "--format",
        "csv",
        env=env,
    )
    assert query.returncode == 0, query.stderr[-2000:]
    assert int(query.stdout.split()[-1]) > 0
    # The PostgreSQL migrations travel in the wheel too.
    migrated = _run(
        installed_wheel,
        tmp_path,
        "db",
        "upgrade",
        env={**env, "ROADLENS_POSTGRES_URL": postgres_url, "ROADLENS_POSTGRES_SCHEMA": pg_schema},
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    assert "001_detections.sql" in migrated.stdout


def test_ingest_and_demo_come_with_the_dagster_layer_only() -> None:
    from roadlens.cli import build_parser
    from roadlens_dagster.cli import add_commands

    assert build_parser(add_commands).parse_args(["ingest", "a.mp4"]).command == "ingest"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "a.mp4"])
