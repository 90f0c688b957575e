"""Atomic writes: the new file or the old one, fsynced, and never a temporary file left over."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from roadlens.atomic import (
    atomic_path,
    move_into_place,
    temp_beside,
    write_bytes_atomic,
    write_text_atomic,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    assert write_text_atomic(target, "new ä\n") == target
    assert target.read_bytes() == "new ä\n".encode()
    assert write_bytes_atomic(str(target), b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    assert _names(tmp_path) == ["state.json"]


def test_data_and_rename_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("folder" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_text_atomic(tmp_path / "a.txt", "x")
    assert synced == ["file", "folder"]
    synced.clear()
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"y")
    assert synced == ["file", "folder"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ledger.json"
    target.write_text("old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(target, "new")
    with pytest.raises(OSError, match="No space left"), atomic_path(target) as tmp:
        tmp.write_text("new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["ledger.json"]


def test_a_failed_rename_keeps_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    def refuse(src: object, dst: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        write_bytes_atomic(target, b"new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["state.json"]


def test_an_exception_in_the_writer_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old clip")
    with (
        pytest.raises(RuntimeError, match="ffmpeg failed"),
        atomic_path(target, keep_suffix=True) as tmp,
    ):
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".")
        tmp.write_bytes(b"half a clip")
        raise RuntimeError("ffmpeg failed")
    assert target.read_bytes() == b"old clip"
    assert _names(tmp_path) == ["clip.mp4"]


def test_mode_holds_from_the_start(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "spool.parquet", mode=0o600) as tmp:
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # created before any data
            with open(tmp, "wb") as handle:  # truncating keeps the mode
                handle.write(b"data")
        write_text_atomic(tmp_path / "sources.json", "{}", mode=0o600)
        write_text_atomic(tmp_path / "plain.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "spool.parquet").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "sources.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o644


def test_temporary_names_are_hidden_and_unique(tmp_path: Path) -> None:
    target = tmp_path / "chunk.mp4.done"
    first, second = temp_beside(target), temp_beside(target)
    assert first != second
    assert first.parent == tmp_path
    assert first.name.startswith(".chunk.mp4.done.") and first.name.endswith(".tmp")
    kept = temp_beside(tmp_path / "e1-frame.jpg", keep_suffix=True)
    assert kept.name.startswith(".e1-frame.") and kept.name.endswith(".tmp.jpg")


def test_move_into_place_needs_a_finished_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        move_into_place(tmp_path / ".missing.tmp", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_folder_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_text_atomic(tmp_path / "missing" / "a.txt", "x")
    assert _names(tmp_path) == []
