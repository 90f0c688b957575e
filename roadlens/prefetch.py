"""Work one step ahead: items produced by a helper thread, a bounded number in advance.

Decoding (FFmpeg) and numpy/Arrow encoding release the GIL, so the next item is made on one
core while the consumer works on the previous one on the other.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar, cast

T = TypeVar("T")
_DONE = object()


def prefetch(
    items: Iterable[T], depth: int = 2, *, name: str = "roadlens-prefetch"
) -> Generator[T, None, None]:
    """``items`` produced by a thread ``name``, at most ``depth`` ahead of the consumer.

    An exception in the producer is raised in the consumer; closing the consumer stops the
    producer.

    >>> list(prefetch(range(5), depth=2))
    [0, 1, 2, 3, 4]
    """
    ready: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            ready.put((_DONE, exc))

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield cast(T, item)  # not the end marker: one of ``items``
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
