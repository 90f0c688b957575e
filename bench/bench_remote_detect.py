"""Benchmark the remote detection provider against local detection on the same frames.

A rendered 20 s synthetic dashcam clip (or a given clip) is sampled at 5 fps into memory
once. ``roadlens detect-server`` starts in a subprocess on a loopback port (or ``--url``
points at a running provider, e.g. a GPU box), then these run in interleaved rounds, all
with ByteTrack tracking on the client:

- ``local``: ``Detector.detect`` with the default (fastest installed) backend;
- ``remote jpeg/multipart x1``: one request in flight, batches of ``--batch`` frames;
- ``remote jpeg/multipart xN``: ``N`` requests in flight for each ``--inflight`` value;
- ``remote png/multipart``, ``remote jpeg/json``: the other encodings at the largest N.

On one machine the server and the client share the CPU, so loopback figures measure the
protocol's overhead (encoding, HTTP, decoding) on top of the same model, not a speed-up;
a provider on another host adds its own compute instead of competing for this one's.
Reported per row: frames/s (median of rounds), spread, ratio to local, and where the time
went (client-side encode, server-side inference, waiting for replies).

This script reports, it never fails: problems become notes and the exit status is 0.

Usage:
    .venv/bin/python bench/bench_remote_detect.py [clip] [--rounds N] [--seconds S]
        [--batch 8] [--inflight 2 4] [--url http://host:8766] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Method, format_spread, interleave, versions
from roadlens.detect.detector import DEMO_WEIGHTS, DetectionResult, Detector, DetectorConfig
from roadlens.detect.remote import RemoteConfig, RemoteDetector
from roadlens.video import iter_sampled_frames

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(weights: str, home: Path, device: str) -> tuple[subprocess.Popen, str]:
    """``roadlens detect-server`` on a free loopback port; returns it once healthy."""
    port = _free_port()
    env = {**os.environ, "ROADLENS_HOME": str(home)}
    command = [
        sys.executable, "-m", "roadlens.cli", "detect-server", "--port", str(port),
        "--weights", weights, "--max-inflight", "16", "--max-batch", "64", "--device", device,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"detect-server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).json().get("status") == "ok":
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("detect-server did not come up in 180 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", help="video file (default: a rendered 20 s clip)")
    parser.add_argument("--seconds", type=float, default=20.0, help="rendered clip length")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="frames per request")
    parser.add_argument("--inflight", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--url", help="a running provider instead of a loopback detect-server")
    parser.add_argument("--weights", default=str(DEMO_WEIGHTS))
    parser.add_argument("--server-device", default="cpu", help="loopback server's device")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    notes: list[str] = []

    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        home = Path(os.environ.get("ROADLENS_HOME") or Path(tmp) / "home")
        os.environ["ROADLENS_HOME"] = str(home)
        if args.clip:
            clip = Path(args.clip)
        else:
            from roadlens.synth import render_clip

            clip = render_clip(Path(tmp) / "clip.mp4", seconds=args.seconds, seed=11).video_path
        frames = list(iter_sampled_frames(clip, 5.0))
        images = [f.image for f in frames]
        numbers = [f.frame_number for f in frames]
        pts = [f.pts_sec for f in frames]
        h, w = images[0].shape[:2]

        proc = None
        url = args.url
        if url is None:
            proc, url = start_server(args.weights, home, args.server_device)
        try:
            local = Detector(DetectorConfig(weights=args.weights, cache_dir=str(home)))
            info = httpx.get(f"{url.rstrip('/')}/v1/info", timeout=10).json()

            def run(detector: Detector) -> DetectionResult:
                return detector.detect(images, frame_numbers=numbers, pts_sec=pts, video_id="b")

            def remote(fmt: str, request: str, inflight: int) -> RemoteDetector:
                config = RemoteConfig(
                    url=url,
                    image_format=fmt,
                    request_format=request,
                    batch_size=args.batch,
                    max_in_flight=inflight,
                )
                return RemoteDetector(config, DetectorConfig(weights=args.weights))

            top = max(args.inflight)
            detectors: dict[str, Detector] = {
                "local": local,
                "remote jpeg/multipart x1": remote("jpeg", "multipart", 1),
            }
            for n in args.inflight:
                detectors[f"remote jpeg/multipart x{n}"] = remote("jpeg", "multipart", n)
            detectors[f"remote png/multipart x{top}"] = remote("png", "multipart", top)
            detectors[f"remote jpeg/json x{top}"] = remote("jpeg", "json", top)
            methods = [Method(name, lambda d=d: run(d)) for name, d in detectors.items()]
            timings = interleave(methods, args.rounds)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=15)

    n = len(images)
    base = timings["local"].median
    print(f"remote detection vs local: {n} frames {w}x{h} sampled at 5 fps from {clip.name}")
    print(
        f"provider {'loopback detect-server' if args.url is None else url}: "
        f"model {info['model']['name']} backend {info['backend']} device {info.get('device')}; "
        f"local backend {local.backend}; batch {args.batch}; {args.rounds} rounds; "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})"
    )
    print(
        f"{'method':<28} {'frames/s':>9} {'spread':>10} {'vs local':>9} "
        f"{'encode s':>9} {'server s':>9} {'wait s':>8} {'rows':>6} {'tracks':>6}"
    )
    figures: dict[str, Any] = {}
    for name, timing in timings.items():
        result: DetectionResult = timing.results[-1]
        fps = n / timing.median
        t = result.timings
        figures[name] = {
            "frames_per_s": round(fps, 1),
            "ratio_to_local": round(base / timing.median, 3),
            "spread": format_spread(timing),
            "rows": result.table.num_rows,
            "tracks": result.tracks,
            "encode_s": round(t.get("remote_encode_s", 0.0), 3),
            "server_inference_s": round(t.get("remote_server_inference_s", 0.0), 3),
            "wait_s": round(result.seconds_model, 3),
        }
        f = figures[name]
        print(
            f"{name:<28} {fps:>9.1f} {format_spread(timing):>10} {f['ratio_to_local']:>8.2f}x "
            f"{f['encode_s']:>9.3f} {f['server_inference_s']:>9.3f} {f['wait_s']:>8.3f} "
            f"{f['rows']:>6} {f['tracks']:>6}"
        )
    local_rows = figures["local"]["rows"]
    png = figures[f"remote png/multipart x{max(args.inflight)}"]["rows"]
    if args.url is None and png != local_rows:
        notes.append(f"png rows {png} differ from local {local_rows} (expected equal)")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        payload = {
            "frames": n,
            "size": [w, h],
            "figures": figures,
            "notes": notes,
            "versions": versions("ultralytics", "openvino", "httpx", "fastapi", "uvicorn"),
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
