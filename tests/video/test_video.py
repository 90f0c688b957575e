"""Tests for roadlens.video on real files: the shared dashcam clip and clips rendered here."""

from __future__ import annotations

import io
import re
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadlens.schema import FRAMES
from roadlens.video import (
    PartialVideoWarning,
    VideoError,
    iter_sampled_frames,
    mp4,
    probe,
    read_creation_time,
    read_rotation,
    sample_video,
    write_creation_time,
)
from tests.conftest import REPO

DASHCAM = REPO.parent / "shared" / "data" / "dashcam.mp4"
START = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)


@pytest.fixture
def dashcam() -> Path:
    if not DASHCAM.is_file():
        pytest.skip(f"shared test clip not found at {DASHCAM}")
    return DASHCAM


def render_clip(path: Path, fps: float, frames: int = 20, size: tuple[int, int] = (64, 48)) -> Path:
    """Write an mp4v clip whose frame i is a flat grey of level 10 * i (all frames differ)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(frames):
        writer.write(np.full((height, width, 3), 10 * i, np.uint8))
    writer.release()
    return path


def box_chain(data: bytes | bytearray, path: tuple[str, ...]) -> list[mp4.Box]:
    """Every box along ``path`` from the top level down, e.g. moov, trak, ..., stts."""
    f = io.BytesIO(data)
    start, end, chain = 0, len(data), []
    for box_type in path:
        box = mp4.find_box(f, (box_type,), start, end)
        assert box is not None, f"no {box_type} in {path}"
        chain.append(box)
        start, end = box.payload_offset, box.end
    return chain


def set_frame_durations(path: Path, seconds: list[float]) -> None:
    """Rewrite the (only) track's stts so frame i lasts ``seconds[i]``: real VFR."""
    data = bytearray(path.read_bytes())
    stbl = ("moov", "trak", "mdia", "minf", "stbl")
    mdhd = box_chain(data, (*stbl[:3], "mdhd"))[-1]
    (timescale,) = struct.unpack_from(">I", data, mdhd.payload_offset + 12)  # version 0
    deltas = [round(s * timescale) for s in seconds]
    runs: list[list[int]] = []
    for delta in deltas:
        if runs and runs[-1][1] == delta:
            runs[-1][0] += 1
        else:
            runs.append([1, delta])
    payload = struct.pack(">II", 0, len(runs)) + b"".join(struct.pack(">II", *r) for r in runs)
    chain = box_chain(data, (*stbl, "stts"))
    # moov last in the file: growing it moves no media, so chunk offsets stay valid.
    assert chain[0].end == len(data)
    stts = chain[-1]
    growth = 8 + len(payload) - stts.size
    for box in chain[:-1]:
        struct.pack_into(">I", data, box.offset, box.size + growth)
    data[stts.offset : stts.end] = struct.pack(">I4s", 8 + len(payload), b"stts") + payload
    path.write_bytes(data)


def set_rotation(path: Path, degrees: int) -> None:
    """Write a clockwise rotation into the first tkhd matrix (a, b, c, d in 16.16)."""
    data = bytearray(path.read_bytes())
    tkhd = box_chain(data, ("moov", "trak", "tkhd"))[-1]
    assert data[tkhd.payload_offset] == 0  # version 0 layout below
    cos, sin = round(np.cos(np.radians(degrees))), round(np.sin(np.radians(degrees)))
    matrix = tkhd.payload_offset + 4 + 20 + 16
    struct.pack_into(">ii", data, matrix, cos << 16, sin << 16)
    struct.pack_into(">ii", data, matrix + 12, -sin << 16, cos << 16)
    path.write_bytes(data)


# --- probe ------------------------------------------------------------------------------


def test_probe_dashcam(dashcam: Path) -> None:
    info = probe(dashcam)
    assert info.path == dashcam
    assert info.fps == pytest.approx(30.0)
    assert info.frame_count == 414
    assert info.duration_s == pytest.approx(13.8)
    assert (info.width, info.height) == (640, 360)
    assert info.codec == "h264"
    assert info.rotation == 0
    assert info.creation_time == datetime(2021, 1, 14, 0, 0, 55, tzinfo=UTC)
    assert info.size_bytes == dashcam.stat().st_size


def test_probe_rendered_clip(tmp_path: Path) -> None:
    info = probe(render_clip(tmp_path / "clip.mp4", fps=10))
    assert (info.fps, info.frame_count, info.width, info.height) == (10.0, 20, 64, 48)
    assert info.codec in {"mp4v", "FMP4"}  # FFmpeg may report its own tag for MPEG-4 Part 2
    assert info.creation_time is None  # OpenCV leaves mvhd creation_time at 0


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        probe(missing)


def test_empty_file_raises_video_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(VideoError, match=re.escape(f"{empty}: file is empty (0 bytes)")):
        probe(empty)
    with pytest.raises(VideoError, match=re.escape(str(empty))):
        sample_video(empty, out_dir=None, video_id="v", start_time=START)


def test_text_file_renamed_mp4_raises_video_error(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are meeting notes, not a video\n" * 20)
    with pytest.raises(VideoError, match=re.escape(str(fake))):
        probe(fake)
    with pytest.raises(VideoError, match=re.escape(str(fake))):
        iter_sampled_frames(fake)  # eager: raises before the first frame is asked for
    assert read_creation_time(fake) is None
    assert read_rotation(fake) is None


def test_rotation_from_tkhd_matches_opencv(tmp_path: Path) -> None:
    clip = render_clip(tmp_path / "rot.mp4", fps=10, size=(64, 48))
    set_rotation(clip, 90)
    assert read_rotation(clip) == 90
    info = probe(clip)
    assert info.rotation == 90
    # OpenCV applies the rotation, so display size and decoded frames are portrait.
    assert (info.width, info.height) == (48, 64)
    frame = next(iter_sampled_frames(clip, max_frames=1))
    assert frame.image.shape == (64, 48, 3)


# --- sampling ---------------------------------------------------------------------------


def test_sample_dashcam_at_5fps_uses_container_pts(dashcam: Path) -> None:
    frames = list(iter_sampled_frames(dashcam, 5.0))
    assert len(frames) == 69
    pts = np.array([f.pts_sec for f in frames])
    assert pts[0] == 0.0
    assert np.all(np.diff(pts) > 0)
    np.testing.assert_allclose(np.diff(pts), 0.2, atol=1 / 60)
    assert [f.frame_number for f in frames] == [6 * i for i in range(69)]
    assert frames[0].image.shape == (360, 640, 3)


def test_target_fps_none_gives_every_frame(dashcam: Path) -> None:
    frames = list(iter_sampled_frames(dashcam, None))
    assert len(frames) == 414
    assert [f.frame_number for f in frames] == list(range(414))
    assert np.all(np.diff([f.pts_sec for f in frames]) > 0)


def test_target_fps_at_or_above_source_gives_every_frame(tmp_path: Path) -> None:
    clip = render_clip(tmp_path / "clip.mp4", fps=10)
    assert len(list(iter_sampled_frames(clip, 10.0))) == 20
    assert len(list(iter_sampled_frames(clip, 60.0))) == 20


def test_sampled_frames_are_the_grabbed_frames(tmp_path: Path) -> None:
    clip = render_clip(tmp_path / "clip.mp4", fps=10)
    frames = list(iter_sampled_frames(clip, 5.0))
    assert [f.pts_sec for f in frames] == pytest.approx([0.2 * i for i in range(10)])
    assert [f.frame_number for f in frames] == list(range(0, 20, 2))
    # retrieve() returned the grabbed picture: identical to frame i of a plain read() loop.
    capture = cv2.VideoCapture(str(clip))
    every = [capture.read()[1] for _ in range(20)]
    capture.release()
    for f in frames:
        assert np.array_equal(f.image, every[f.frame_number])


def test_vfr_samples_follow_timestamps_not_frame_index(tmp_path: Path) -> None:
    clip = render_clip(tmp_path / "vfr.mp4", fps=10)
    # Ten frames at 10 fps, then ten at 20 fps: pts 0.0 ... 0.9, 1.0, 1.05 ... 1.45.
    set_frame_durations(clip, [0.1] * 10 + [0.05] * 10)
    frames = list(iter_sampled_frames(clip, 5.0))
    assert [f.pts_sec for f in frames] == pytest.approx(
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4], abs=1e-3
    )
    assert [f.frame_number for f in frames] == [0, 2, 4, 6, 8, 10, 14, 18]
    all_pts = [f.pts_sec for f in iter_sampled_frames(clip, None)]
    assert all_pts[10:13] == pytest.approx([1.0, 1.05, 1.10], abs=1e-3)


def test_max_frames_and_bad_arguments(tmp_path: Path) -> None:
    clip = render_clip(tmp_path / "clip.mp4", fps=10)
    assert [f.frame_number for f in iter_sampled_frames(clip, 5.0, max_frames=3)] == [0, 2, 4]
    with pytest.raises(ValueError, match="target_fps"):
        iter_sampled_frames(clip, 0.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        sample_video(clip, out_dir=None, video_id="v", start_time=datetime(2024, 5, 1))
    result = sample_video(clip, out_dir=None, video_id="v", start_time=START, max_frames=3)
    assert result.table.num_rows == 3
    assert not result.partial  # stopping on purpose is not a partial decode


def test_sample_video_table_and_jpegs(dashcam: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    result = sample_video(
        dashcam,
        5.0,
        out_dir=tmp_path / "q90",
        video_id="v1",
        start_time=START,
        keep_images=True,
        progress=lambda done, total: calls.append((done, total)),
    )
    table = result.table
    assert table.schema.equals(FRAMES, check_metadata=True)
    assert table.num_rows == 69
    assert (result.partial, result.frames_decoded, result.frames_expected) == (False, 414, 414)
    assert result.warnings == []
    assert result.info.frame_count == 414
    assert result.seconds > 0
    assert calls[-1] == (414, 414)

    rows = table.to_pylist()
    assert {r["video_id"] for r in rows} == {"v1"}
    assert {(r["width"], r["height"]) for r in rows} == {(640, 360)}
    for row in rows[:5]:
        assert row["captured_at"] == START + timedelta(seconds=row["pts_sec"])
    assert rows[1]["captured_at"] == START + timedelta(milliseconds=200)

    paths = [Path(r["image_path"]) for r in rows]
    assert all(p.is_absolute() for p in paths)
    assert paths[1].name == "000006.jpg"
    image = cv2.imread(str(paths[1]))
    assert image is not None and image.shape == (360, 640, 3)

    assert len(result.images) == 69
    np.testing.assert_allclose(image.astype(float).mean(), result.images[1].mean(), atol=2)


def test_jpeg_quality_changes_file_size(dashcam: Path, tmp_path: Path) -> None:
    sizes = {}
    for quality in (95, 30):
        result = sample_video(
            dashcam,
            5.0,
            out_dir=tmp_path / f"q{quality}",
            video_id="v",
            start_time=START,
            jpeg_quality=quality,
            max_frames=3,
        )
        assert result.images == []  # not kept unless asked
        sizes[quality] = sum(Path(p).stat().st_size for p in result.table["image_path"].to_pylist())
    assert sizes[30] < 0.6 * sizes[95]


def test_no_out_dir_leaves_image_path_null(tmp_path: Path) -> None:
    clip = render_clip(tmp_path / "clip.mp4", fps=10)
    result = sample_video(clip, out_dir=None, video_id="v", start_time=START)
    assert result.table["image_path"].null_count == result.table.num_rows == 10
    assert list(tmp_path.iterdir()) == [clip]


# --- damaged files ----------------------------------------------------------------------


def test_truncated_camera_file_loses_its_index(dashcam: Path, tmp_path: Path) -> None:
    # Cameras write moov last: the first 40 % of the bytes has no index, so nothing decodes.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(dashcam.read_bytes()[: int(dashcam.stat().st_size * 0.4)])
    with pytest.raises(VideoError, match=re.escape(str(cut))):
        sample_video(cut, out_dir=None, video_id="v", start_time=START)


def test_truncated_faststart_file_decodes_partially(dashcam: Path, tmp_path: Path) -> None:
    whole = tmp_path / "faststart.mp4"
    mp4.faststart(dashcam, whole)
    assert probe(whole).frame_count == 414
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.4)])

    with pytest.warns(PartialVideoWarning, match=re.escape(str(cut))):
        result = sample_video(cut, 5.0, out_dir=None, video_id="v", start_time=START)
    assert result.partial
    assert 0 < result.frames_decoded < 0.98 * result.frames_expected
    assert 0 < result.table.num_rows < 69
    assert len(result.warnings) == 1 and str(cut) in result.warnings[0]

    with pytest.warns(PartialVideoWarning, match=re.escape(str(cut))):
        frames = list(iter_sampled_frames(cut, 5.0))
    assert len(frames) == result.table.num_rows


def test_faststart_keeps_every_frame(dashcam: Path, tmp_path: Path) -> None:
    whole = tmp_path / "faststart.mp4"
    mp4.faststart(dashcam, whole)
    with open(whole, "rb") as f:
        order = [b.type for b in mp4.iter_boxes(f)]
    assert order.index("moov") < order.index("mdat")
    original = [f.image for f in iter_sampled_frames(dashcam, 1.0)]
    moved = [f.image for f in iter_sampled_frames(whole, 1.0)]
    assert len(moved) == len(original) == 14
    assert all(np.array_equal(a, b) for a, b in zip(original, moved, strict=True))


# --- mp4 creation time --------------------------------------------------------------------


def test_creation_time_round_trip(tmp_path: Path) -> None:
    clip = render_clip(tmp_path / "clip.mp4", fps=10)
    size = clip.stat().st_size
    assert read_creation_time(clip) is None
    when = datetime(2024, 5, 1, 10, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    write_creation_time(clip, when)
    assert read_creation_time(clip) == when
    assert read_creation_time(clip).tzinfo == UTC
    assert clip.stat().st_size == size
    info = probe(clip)
    assert info.creation_time == datetime(2024, 5, 1, 8, 30, 15, tzinfo=UTC)
    assert info.frame_count == 20  # still a valid video


def test_read_creation_time_of_dashcam(dashcam: Path) -> None:
    assert read_creation_time(dashcam) == datetime(2021, 1, 14, 0, 0, 55, tzinfo=UTC)


def test_write_creation_time_rejects_bad_input(tmp_path: Path) -> None:
    clip = render_clip(tmp_path / "clip.mp4", fps=10)
    with pytest.raises(ValueError, match="timezone-aware"):
        write_creation_time(clip, datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="does not fit mvhd version 0"):
        write_creation_time(clip, datetime(2100, 1, 1, tzinfo=UTC))  # past 32-bit range
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    with pytest.raises(ValueError, match=re.escape(f"{fake}: no moov/mvhd")):
        write_creation_time(fake, START)


def test_creation_time_version_1_mvhd(tmp_path: Path) -> None:
    # A minimal ISO-BMFF file whose mvhd uses 64-bit (version 1) times.
    mvhd = struct.pack(">B3xQQIQ", 1, 0, 0, 1000, 0) + bytes(80)
    moov = struct.pack(">I4s", 8 + 8 + len(mvhd), b"moov") + struct.pack(
        ">I4s", 8 + len(mvhd), b"mvhd"
    )
    ftyp = struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0)
    path = tmp_path / "v1.mp4"
    path.write_bytes(ftyp + moov + mvhd)
    assert read_creation_time(path) is None
    when = datetime(2100, 1, 1, tzinfo=UTC)  # needs 64 bits
    write_creation_time(path, when)
    assert read_creation_time(path) == when
