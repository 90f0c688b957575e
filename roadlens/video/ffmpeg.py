"""Where the ffmpeg executable is: one answer for every caller (clips, live recording).

:func:`ffmpeg_exe` asks imageio-ffmpeg, which looks in this order: the
``IMAGEIO_FFMPEG_EXE`` environment variable (taken as is), the binary bundled with the
``imageio-ffmpeg`` wheel, a conda ``ffmpeg`` in the interpreter's prefix, then ``ffmpeg``
on ``PATH``; it raises ``RuntimeError`` when none is found.

Example:
    >>> from pathlib import Path
    >>> Path(ffmpeg_exe()).name.startswith("ffmpeg")
    True
"""

from __future__ import annotations

__all__ = ["ffmpeg_exe"]


def ffmpeg_exe() -> str:
    """The ffmpeg executable (see the module doc for the search order).

    Raises:
        RuntimeError: no ffmpeg could be found.
    """
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())
