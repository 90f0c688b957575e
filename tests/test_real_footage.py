"""Real footage through the real COCO detector: parity, road classes, bounded memory, errors.

Uses ``../shared/data`` clips and ``../shared/models`` exports; skips when they are absent
and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from roadlens.camera import CameraProfile
from roadlens.detect.detector import Detector, DetectorConfig
from roadlens.detect.weights import ROAD_CLASSES, WeightsError, check_weights, road_class_ids
from roadlens.video import iter_sampled_frames, probe
from roadlens.video import stream as video_stream
from tests.conftest import REPO, shared_data, shared_model

pytestmark = pytest.mark.slow


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two (N, 4) and (M, 4) xyxy arrays."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def test_detector_reproduces_ultralytics_predictions_on_a_real_clip() -> None:
    from ultralytics import YOLO

    weights = shared_model()
    clip = shared_data("dashcam.mp4")
    frames = list(iter_sampled_frames(clip, 5.0))
    detector = Detector(DetectorConfig(weights=str(weights), tracker=None))
    detector.warmup(*frames[0].image.shape[:2])
    classes = road_class_ids(detector.class_names)
    ours = detector.detect(
        [f.image for f in frames],
        frame_numbers=[f.frame_number for f in frames],
        pts_sec=[f.pts_sec for f in frames],
        video_id="v",
        classes=classes,
    ).table.to_pandas()
    peer = YOLO(str(weights), task="detect")
    matched = total = 0
    for frame in frames:
        result = peer.predict(
            frame.image, imgsz=640, conf=0.25, iou=0.5, classes=classes, verbose=False
        )[0]
        theirs = result.boxes.xyxy.cpu().numpy()
        their_cls = result.boxes.cls.cpu().numpy().astype(int)
        mine = ours[ours.frame_number == frame.frame_number]
        total += len(theirs)
        assert len(mine) == len(theirs), f"frame {frame.frame_number}"
        if not len(theirs):
            continue
        iou = _iou(mine[["x1", "y1", "x2", "y2"]].to_numpy(), theirs)
        best = iou.argmax(axis=0)
        same_class = mine.class_id.to_numpy()[best] == their_cls
        matched += int(((iou.max(axis=0) > 0.9) & same_class).sum())
    assert total > 100
    assert matched == total


def test_road_classes_only_and_the_class_map_kept(tmp_path: Path) -> None:
    """End to end through `roadlens ingest`: no airplane or tv, the full map in metadata."""
    home = _ingest(tmp_path, shared_data("dashcam.mp4"))
    raw = next((home / "lake" / "raw_detections").rglob("*.parquet"))
    table = pq.read_table(raw)
    names = set(table.column("class_name").to_pylist())
    assert names and names <= set(ROAD_CLASSES)
    model_classes = json.loads(table.schema.metadata[b"model_classes"])
    assert len(model_classes) == 80 and model_classes["4"] == "airplane"
    # The default keeps no JPEG per sampled frame: the lake is a small share of the video.
    lake_bytes = sum(p.stat().st_size for p in (home / "lake").rglob("*") if p.is_file())
    assert not list((home / "lake").rglob("*.jpg"))
    assert lake_bytes < 0.10 * shared_data("dashcam.mp4").stat().st_size


def _ingest(tmp_path: Path, clip: Path, *extra: str, weights: str | None = None) -> Path:
    home = tmp_path / "home"
    landing = tmp_path / "landing" / "cam"
    landing.mkdir(parents=True)
    target = landing / clip.name
    target.symlink_to(clip)
    env = {
        "ROADLENS_HOME": str(home),
        "ROADLENS_WEIGHTS": weights or str(shared_model()),
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(home / "ultralytics"),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "roadlens_dagster.cli", "ingest", str(target), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def test_detection_holds_a_bounded_number_of_decoded_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However long the video, at most prefetch + one batch + a couple frames are alive."""
    from roadlens import pipeline
    from roadlens.lake import ParquetLake
    from roadlens.registry import probe_video_record

    clip = shared_data("roadside.mp4")
    live: set[int] = set()
    peak = [0]
    real_decode = video_stream.decode_sampled

    def counted(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        for frame in real_decode(*args, **kwargs):  # type: ignore[arg-type]
            key = id(frame.image)
            live.add(key)
            weakref.finalize(frame.image, live.discard, key)
            peak[0] = max(peak[0], len(live))
            yield frame

    monkeypatch.setattr(pipeline, "decode_sampled", counted)
    lake = ParquetLake(tmp_path / "lake")
    record = probe_video_record(clip, landing_root=clip.parent, source_id="cam")
    camera = CameraProfile.of("fixed", sample_fps=30.0)  # every frame: 716 decoded
    frames = pipeline.extract_frames(lake, record, camera=camera)
    assert frames.rows > 700
    detector = Detector(DetectorConfig(weights=str(shared_model()), tracker=None))
    outcome = pipeline.detect_video(lake, record, detector, camera=camera)
    assert outcome.extra["frames"] == frames.rows
    # The queue, the frame the decoder waits to queue, the model's, the one being tracked and
    # the decoder's current one.
    bound = pipeline.PREFETCH_FRAMES + 1 + detector.frames_in_flight + 2
    assert 0 < peak[0] <= bound, f"{peak[0]} decoded frames alive at once (bound {bound})"


def test_missing_and_corrupt_weights_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no such file"):
        check_weights(tmp_path / "nope.pt")
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(WeightsError, match=r"broken\.pt: not a PyTorch checkpoint"):
        check_weights(bad)
    folder = tmp_path / "ov"
    folder.mkdir()
    (folder / "model.xml").write_text("<net/>")
    with pytest.raises(WeightsError, match=r"without its \.bin"):
        check_weights(folder)
    onnx = tmp_path / "garbage.onnx"
    onnx.write_bytes(b"\x00garbage" * 50)
    detector = Detector(DetectorConfig(weights=str(onnx), backend="onnx"))
    with pytest.raises(WeightsError, match=r"garbage\.onnx: cannot be loaded"):
        detector.warmup(360, 640)


def test_a_model_without_road_classes_is_refused_with_its_class_list() -> None:
    with pytest.raises(WeightsError, match=r"its classes are: cat, dog"):
        road_class_ids({0: "cat", 1: "dog"}, model="pets.pt")
    assert road_class_ids({0: "cat", 1: "car"}, "all") is None
    assert road_class_ids({0: "cat", 1: "car", 2: "bus"}, ("bus",)) == [2]


def test_cli_bad_weights_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    clip = shared_data("dashcam.mp4")
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"junk")
    done = subprocess.run(
        [sys.executable, "-m", "roadlens_dagster.cli", "ingest", str(clip), "--weights", str(bad)],
        cwd=REPO,
        env={"ROADLENS_HOME": str(tmp_path / "h"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "w.pt: not a PyTorch checkpoint" in done.stderr
    assert "Traceback" not in done.stderr


def test_offline_default_falls_back_to_the_demo_model_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from roadlens.detect.weights import DEMO_WEIGHTS, resolve_weights

    monkeypatch.delenv("ROADLENS_WEIGHTS", raising=False)
    resolved = resolve_weights(None, home=tmp_path)
    if not resolved.demo_fallback:  # a machine that reached the hub got the real model
        assert Path(resolved.path).name == "yolo11n.pt"
        return
    assert resolved.path == str(DEMO_WEIGHTS)
    assert resolved.note and "yolo11n.pt" in resolved.note and "ROADLENS_WEIGHTS" in resolved.note
    assert "\n" not in resolved.note


# A person counts 28 vehicles crossing a full-width line at y = 0.6 of roadside.mp4, all
# moving towards the camera (one more straddles the line at frame 0 and never crosses).
ROADSIDE_COUNT = 28
ROADSIDE_RULES = """
version: 1
areas:
  count-line:
    line: [[0.0, 0.6], [1.0, 0.6]]
    extend: true
    normalized: true
    in_side: right
rules:
  - id: line-count
    name: Vehicles crossing the counting line
    criteria: {classes: [car, truck, bus, motorcycle]}
    anchor: center
    trigger: {cross: {line: count-line, count: every}}
"""


def test_roadside_count_at_the_fixed_camera_default(tmp_path: Path) -> None:
    """`roadlens ingest --kind fixed` on the real roadside clip counts what a person counts."""
    rules = tmp_path / "count.yaml"
    rules.write_text(ROADSIDE_RULES)
    clip = shared_data("roadside.mp4")
    home = _ingest(tmp_path, clip, "--kind", "fixed", "--rules", str(rules))
    frames = pq.read_table(next((home / "lake" / "frames").rglob("*.parquet")))
    # The fixed-camera default samples at most 10 frames per second of video.
    assert frames.num_rows <= 10 * probe(clip).duration_s + 1
    events = pq.read_table(next((home / "lake" / "events").rglob("*.parquet"))).to_pandas()
    crossings = events[events.rule_id == "line-count"]
    assert abs(len(crossings) - ROADSIDE_COUNT) <= 2, crossings[["frame_number", "track_id"]]
    # Each vehicle crosses once: a tracker that loses fast movers counts a vehicle twice
    # or not at all, so a count can only be right with (almost) one crossing per track.
    assert crossings.track_id.nunique() >= len(crossings) - 1
    assert set(crossings.direction) == {"in"}
