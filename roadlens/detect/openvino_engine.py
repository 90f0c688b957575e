"""OpenVINO inference with requests in flight, pre- and post-processed exactly as ultralytics.

ultralytics runs a static batch-1 OpenVINO export in LATENCY mode, one request at a time,
each spread over every core. OpenVINO's THROUGHPUT hint instead runs one stream per core
with a request in flight on each: on a 2-core machine YOLO11n INT8 at 640x640 took
19-20 ms per frame the first way and 16.5-16.7 ms the second (``bench/bench_detect.py``).
:class:`OpenVINOEngine` keeps ultralytics' letterbox, NMS and box scaling, so its boxes are
the ones ``YOLO(folder).predict`` returns, and only changes how the model is driven.

Example:
    >>> engine = OpenVINOEngine(ir_file(Path("yolo11n_int8_openvino_model")))  # doctest: +SKIP
    >>> for key, boxes in engine.run([("f0", image)], conf=0.25, iou=0.5):  # doctest: +SKIP
    ...     boxes.shape  # (n, 6): x1, y1, x2, y2, confidence, class id in the image's pixels
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

K = TypeVar("K")

PERFORMANCE_HINT = "THROUGHPUT"
MAX_DETECTIONS = 300  # ultralytics' max_det default


def ir_file(weights: Path) -> Path | None:
    """The ``.xml`` graph of an OpenVINO export (a folder or the file itself), else None."""
    if weights.is_dir():
        return next(iter(sorted(weights.glob("*.xml"))), None)
    return weights if weights.suffix == ".xml" else None


class OpenVINOEngine:
    """A static-shape OpenVINO detection export, driven with one request in flight per stream.

    Args:
        xml: The export's graph (its ``.bin`` next to it).
        hint: OpenVINO's ``PERFORMANCE_HINT``.

    Raises:
        ValueError: The graph's input is not a static ``1x3xHxW``: ultralytics' own path
            handles dynamic exports.
    """

    def __init__(self, xml: Path, hint: str = PERFORMANCE_HINT) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(xml), str(xml.with_suffix(".bin")))
        shape = model.inputs[0].get_partial_shape()
        if shape.is_dynamic or len(shape) != 4 or shape[0].get_length() != 1:
            raise ValueError(f"{xml}: input {shape} is not a static 1x3xHxW")
        self.input_hw = (shape[2].get_length(), shape[3].get_length())
        self.compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint})
        count = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._requests = [self.compiled.create_infer_request() for _ in range(max(1, count))]
        self.seconds = 0.0
        """Time spent preparing, waiting for and post-processing frames (not fetching them)."""

    @property
    def in_flight(self) -> int:
        """How many frames the engine holds at most while :meth:`run` is iterated."""
        return len(self._requests)

    def run(
        self,
        items: Iterable[tuple[K, np.ndarray]],
        *,
        conf: float,
        iou: float,
        classes: Sequence[int] | None = None,
    ) -> Iterator[tuple[K, np.ndarray]]:
        """Detect in BGR ``(key, image)`` pairs; yields ``(key, boxes)`` in input order.

        ``boxes`` is ``(n, 6)`` float32: ``x1, y1, x2, y2`` in the image's pixels,
        confidence and class id, as ultralytics' ``Results.boxes.data``.
        """
        from ultralytics.data.augment import LetterBox

        letterbox = LetterBox(self.input_hw, auto=False, stride=32)
        pending: deque[tuple[K, tuple[int, ...], Any]] = deque()
        free = deque(self._requests)
        source = iter(items)
        while True:
            item = next(source, None)
            started = time.perf_counter()
            if item is not None:
                if not free:
                    yield self._finish(pending, free, conf, iou, classes, started)
                    started = time.perf_counter()
                key, image = item
                request = free.popleft()
                padded = cast(np.ndarray, letterbox(image=image))  # an image alone: an image back
                # BGR HWC uint8 -> RGB NCHW float in [0, 1], as ultralytics' preprocess.
                tensor = np.ascontiguousarray(padded[None, ..., ::-1].transpose(0, 3, 1, 2))
                request.start_async({0: tensor.astype(np.float32) / np.float32(255)})
                pending.append((key, image.shape, request))
                self.seconds += time.perf_counter() - started
            elif pending:
                yield self._finish(pending, free, conf, iou, classes, started)
            else:
                return

    def _finish(
        self,
        pending: deque[tuple[K, tuple[int, ...], Any]],
        free: deque[Any],
        conf: float,
        iou: float,
        classes: Sequence[int] | None,
        started: float,
    ) -> tuple[K, np.ndarray]:
        import torch
        from ultralytics.utils import nms, ops

        key, shape, request = pending.popleft()
        request.wait()
        raw = torch.from_numpy(np.array(request.get_output_tensor(0).data))
        free.append(request)
        pred = nms.non_max_suppression(
            raw,
            conf,
            iou,
            list(classes) if classes is not None else None,
            False,
            max_det=MAX_DETECTIONS,
        )[0]
        pred[:, :4] = ops.scale_boxes(self.input_hw, pred[:, :4], (shape[0], shape[1]))
        boxes = pred[:, :6].numpy().astype(np.float32)
        self.seconds += time.perf_counter() - started
        return key, boxes
