"""Replace a file atomically and durably: readers see the old file or the new one, never half.

Every writer follows the same steps: write a hidden temporary file in the target's folder
(so the rename stays on one file system), flush and ``fsync`` it, :func:`os.replace` it over
the target, then ``fsync`` the folder so the rename itself survives a power cut. On any
failure the temporary file is removed and the old target is left as it was.

* :func:`write_bytes_atomic` / :func:`write_text_atomic` for data in memory;
* :func:`atomic_path`, a context manager yielding the temporary path, for writers that need
  a file name (OpenCV ``imwrite``, ffmpeg, ``pyarrow.parquet.write_table``);
* :func:`temp_beside` and :func:`move_into_place`, the two halves of :func:`atomic_path`,
  for code that manages the temporary file itself.

The folder must exist: like :meth:`pathlib.Path.write_bytes`, nothing here creates it.
Temporary names are hidden (``.<name>.<random>.tmp``, or ``.<stem>.<random>.tmp<suffix>``
with ``keep_suffix``), so folder scanners that skip dot-files never pick one up.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_text_atomic(Path(tmp, "state.json"), '{"n": 1}')
    ...     with atomic_path(Path(tmp, "frame.bin"), keep_suffix=True) as part:
    ...         _ = part.write_bytes(b"\\x00\\x01")
    ...     names = sorted(p.name for p in Path(tmp).iterdir())
    ...     text = path.read_text()
    >>> names, text
    (['frame.bin', 'state.json'], '{"n": 1}')
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "move_into_place",
    "temp_beside",
    "write_bytes_atomic",
    "write_text_atomic",
]


def temp_beside(path: str | os.PathLike[str], *, keep_suffix: bool = False) -> Path:
    """A fresh hidden temporary name in ``path``'s folder (the file is not created).

    ``keep_suffix`` ends the name with ``path``'s suffix, for writers that choose the format
    from it (OpenCV, ffmpeg).

    >>> temp_beside("/data/e1-frame.jpg").name.startswith(".e1-frame.jpg.")
    True
    >>> name = temp_beside("/data/e1-frame.jpg", keep_suffix=True).name
    >>> name.startswith(".e1-frame."), name.endswith(".tmp.jpg")
    (True, True)
    """
    path = Path(path)
    token = uuid.uuid4().hex
    if keep_suffix:
        return path.with_name(f".{path.stem}.{token}.tmp{path.suffix}")
    return path.with_name(f".{path.name}.{token}.tmp")


def move_into_place(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """``fsync`` the finished ``tmp``, rename it over ``path``, then ``fsync`` the folder.

    ``tmp`` must be in ``path``'s folder (see :func:`temp_beside`). It is not removed when
    this fails; :func:`atomic_path` does that.
    """
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(Path(path).parent)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, keep_suffix: bool = False, mode: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit, move what was written there
    into place (:func:`move_into_place`). On an exception the temporary file is removed and
    ``path`` is left as it was.

    ``mode`` creates the (empty) temporary file up front with these permission bits (less
    the umask), so the data is never readable by others, not even while it is written;
    the writer must write into that file rather than recreate it. Without ``mode`` the
    writer creates the file.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     target = Path(tmp, "out.txt")
    ...     with atomic_path(target, mode=0o600) as part:
    ...         _ = part.write_text("done")
    ...     oct(target.stat().st_mode & 0o077), target.read_text()
    ('0o0', 'done')
    """
    tmp = temp_beside(path, keep_suffix=keep_suffix)
    try:
        if mode is not None:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        yield tmp
        move_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(
    path: str | os.PathLike[str], data: bytes, *, mode: int | None = None
) -> Path:
    """Replace ``path`` with ``data`` atomically and durably; return ``path`` as a Path.

    ``mode`` gives the new file these permission bits (less the umask) from its creation
    on, e.g. ``0o600`` for a file that holds credentials; default as :func:`open`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_bytes_atomic(Path(tmp, "a.bin"), b"new")
    ...     path.read_bytes()
    b'new'
    """
    path = Path(path)
    tmp = temp_beside(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(
    path: str | os.PathLike[str],
    text: str,
    *,
    encoding: str = "utf-8",
    mode: int | None = None,
) -> Path:
    """:func:`write_bytes_atomic` of ``text`` encoded with ``encoding`` (newlines as given).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_text_atomic(Path(tmp, "a.txt"), "ä\\n").read_bytes()
    b'\\xc3\\xa4\\n'
    """
    return write_bytes_atomic(path, text.encode(encoding), mode=mode)


def _fsync(path: str | os.PathLike[str]) -> None:
    """``fsync`` a file, or a folder (a rename is durable once the folder's entry is on disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
