"""A tiny pure-Python ISO-BMFF (MP4/MOV) box walker.

Only what RoadLens needs from the container and OpenCV does not expose: the ``mvhd``
creation time (read and patch in place), the first video track's rotation, and
``faststart`` to move the ``moov`` index in front of the media data.

Boxes are read with seeks, so multi-gigabyte files cost a few small reads.

Example:
    ```python
    from datetime import UTC, datetime
    from roadlens.video import mp4

    mp4.write_creation_time("clip.mp4", datetime(2024, 5, 1, 8, 30, tzinfo=UTC))
    mp4.read_creation_time("clip.mp4")  # datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    ```
"""

from __future__ import annotations

import io
import math
import os
import shutil
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

MP4_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)
"""Zero of every ISO-BMFF timestamp (seconds since 1904-01-01 UTC)."""

# Boxes whose payload is a plain sequence of child boxes.
_CONTAINERS = frozenset({"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "mvex"})
# Top-level types seen in real files; used to tell ISO-BMFF from anything else.
_TOP_LEVEL = frozenset(
    {"ftyp", "styp", "moov", "mdat", "free", "skip", "wide", "uuid", "pnot", "meta", "moof"}
    | {"mfra", "sidx", "pdin", "prft", "emsg", "junk"}
)
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class Box:
    """One box header: where it is and how big it is.

    Attributes:
        type: Four-character box type, e.g. ``"moov"``.
        offset: File offset of the box header.
        size: Total size in bytes, header included.
        header_size: 8, or 16 for a 64-bit ``largesize`` box.

    Example:
        ```python
        box = Box("mvhd", offset=1000, size=108, header_size=8)
        box.payload_offset, box.end  # (1008, 1108)
        ```
    """

    type: str
    offset: int
    size: int
    header_size: int

    @property
    def payload_offset(self) -> int:
        """File offset of the first byte after the header."""
        return self.offset + self.header_size

    @property
    def end(self) -> int:
        """File offset one past the last byte of the box."""
        return self.offset + self.size


def iter_boxes(f: BinaryIO, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Yield the boxes laid out back to back between ``start`` and ``end``.

    Stops quietly at a malformed header (size smaller than its header or running past
    ``end``), so a truncated file yields the boxes that are complete up to that point
    and the first one that is not.

    Args:
        f: Binary file object opened for reading.
        start: Offset of the first box header.
        end: Offset where the sequence ends; the file size when None.

    Example:
        ```python
        with open("clip.mp4", "rb") as f:
            [box.type for box in iter_boxes(f)]  # ['ftyp', 'free', 'mdat', 'moov']
        ```
    """
    if end is None:
        end = f.seek(0, os.SEEK_END)
    offset = start
    while offset + 8 <= end:
        f.seek(offset)
        header = f.read(8)
        if len(header) < 8:  # a parent box claims more bytes than the file holds
            return
        size, raw_type = struct.unpack(">I4s", header)
        header_size = 8
        if size == 1:
            largesize = f.read(8)
            if len(largesize) < 8:
                return
            size = struct.unpack(">Q", largesize)[0]
            header_size = 16
        elif size == 0:  # "extends to the end of the file"
            size = end - offset
        if size < header_size:
            return
        yield Box(raw_type.decode("latin-1"), offset, size, header_size)
        offset += size


def find_box(
    f: BinaryIO, path: Sequence[str], start: int = 0, end: int | None = None
) -> Box | None:
    """Return the first box reached by following ``path`` down the tree, or None.

    Example:
        ```python
        with open("clip.mp4", "rb") as f:
            mvhd = find_box(f, ("moov", "mvhd"))
        ```
    """
    box: Box | None = None
    for box_type in path:
        box = next((b for b in iter_boxes(f, start, end) if b.type == box_type), None)
        if box is None:
            return None
        start, end = box.payload_offset, box.end
    return box


def is_iso_bmff(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts with a plausible ISO-BMFF box (``ftyp``, ``moov``, ...).

    Example:
        ```python
        is_iso_bmff("clip.mp4"), is_iso_bmff("notes.txt")  # (True, False)
        ```
    """
    with open(path, "rb") as f:
        return _starts_like_iso_bmff(f)


def read_creation_time(path: str | os.PathLike[str]) -> datetime | None:
    """Read ``moov/mvhd`` creation_time as an aware UTC datetime.

    Returns None when the field is 0 (unset, as OpenCV's writer leaves it), when there
    is no ``mvhd``, or when the file is not ISO-BMFF at all.

    Example:
        ```python
        read_creation_time("dashcam.mp4")  # datetime(2021, 1, 13, ..., tzinfo=UTC)
        ```
    """
    with open(path, "rb") as f:
        mvhd = find_box(f, ("moov", "mvhd")) if _starts_like_iso_bmff(f) else None
        version = _full_box_version(f, mvhd)
        if version is None:
            return None
        fmt = ">Q" if version == 1 else ">I"
        raw = f.read(struct.calcsize(fmt))
        if len(raw) < struct.calcsize(fmt):
            return None
        seconds = struct.unpack(fmt, raw)[0]
    if seconds == 0:
        return None
    try:
        return MP4_EPOCH + timedelta(seconds=seconds)
    except OverflowError:  # garbage 64-bit value far past year 9999
        return None


def write_creation_time(path: str | os.PathLike[str], when: datetime) -> None:
    """Patch ``moov/mvhd`` creation_time and modification_time in place.

    The file keeps its size and layout; only the two timestamp fields change.

    Args:
        path: MP4/MOV file to patch.
        when: Timezone-aware datetime; stored with whole-second precision.

    Raises:
        ValueError: ``when`` is naive, does not fit the ``mvhd`` version's field
            (version 0 is 32-bit: 1904 to 2040), or ``path`` has no ``mvhd``.

    Example:
        ```python
        write_creation_time("clip.mp4", datetime(2024, 5, 1, 8, 30, tzinfo=UTC))
        ```
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{path}: creation time must be timezone-aware, got {when!r}")
    seconds = math.floor((when - MP4_EPOCH).total_seconds())
    with open(path, "r+b") as f:
        mvhd = find_box(f, ("moov", "mvhd")) if _starts_like_iso_bmff(f) else None
        version = _full_box_version(f, mvhd)
        if mvhd is None or version is None:
            raise ValueError(f"{path}: no moov/mvhd box; not an MP4/MOV file or truncated")
        limit = 2**64 - 1 if version == 1 else _UINT32_MAX
        if not 0 < seconds <= limit:
            raise ValueError(
                f"{path}: {when.isoformat()} does not fit mvhd version {version} timestamps"
            )
        fmt = ">QQ" if version == 1 else ">II"
        f.seek(mvhd.payload_offset + 4)
        f.write(struct.pack(fmt, seconds, seconds))


def read_rotation(path: str | os.PathLike[str]) -> int | None:
    """Clockwise display rotation of the first video track, from its ``tkhd`` matrix.

    Uses the same convention as FFmpeg's ``rotate`` tag and OpenCV's
    ``CAP_PROP_ORIENTATION_META``: a phone held upright typically reports 90.

    Returns:
        0, 90, 180 or 270; None when the file is not ISO-BMFF or has no video track.

    Example:
        ```python
        read_rotation("dashcam.mp4")  # 0
        ```
    """
    with open(path, "rb") as f:
        moov = find_box(f, ("moov",)) if _starts_like_iso_bmff(f) else None
        if moov is None:
            return None
        for trak in iter_boxes(f, moov.payload_offset, moov.end):
            if trak.type != "trak" or _handler_type(f, trak) != "vide":
                continue
            tkhd = find_box(f, ("tkhd",), trak.payload_offset, trak.end)
            version = _full_box_version(f, tkhd)
            if tkhd is None or version is None:
                return None
            # Skip times, track_id, duration (20 or 32 bytes), then reserved, layer,
            # alternate_group, volume, reserved (16 bytes) to the 3x3 matrix.
            f.seek(tkhd.payload_offset + 4 + (32 if version == 1 else 20) + 16)
            raw = f.read(16)
            if len(raw) < 16:
                return None
            a, b, _u, _c = struct.unpack(">iiii", raw)
            degrees = math.degrees(math.atan2(b, a))
            return round(degrees / 90) * 90 % 360
    return None


def read_video_codecs(path: str | os.PathLike[str]) -> list[str] | None:
    """Sample-entry types (codec FourCCs) of the video tracks, from each ``stsd`` box.

    Lets an error say *which* codec a file uses when FFmpeg cannot open it.

    Returns:
        One FourCC per video track (e.g. ``["avc1"]``), ``[]`` when the ``moov`` has no
        readable video track, None when the file is not ISO-BMFF or has no ``moov``.

    Example:
        ```python
        read_video_codecs("dashcam.mp4")  # ['avc1']
        ```
    """
    with open(path, "rb") as f:
        moov = find_box(f, ("moov",)) if _starts_like_iso_bmff(f) else None
        if moov is None:
            return None
        codecs = []
        for trak in iter_boxes(f, moov.payload_offset, moov.end):
            if trak.type != "trak" or _handler_type(f, trak) != "vide":
                continue
            stsd = find_box(f, ("mdia", "minf", "stbl", "stsd"), trak.payload_offset, trak.end)
            if stsd is None:
                continue
            # version/flags (4) and entry_count (4), then the first sample entry box.
            entry = next(iter_boxes(f, stsd.payload_offset + 8, stsd.end), None)
            if entry is not None:
                codecs.append(entry.type)
        return codecs


def faststart(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy ``src`` to ``dst`` with ``moov`` moved in front of ``mdat``.

    Cameras and OpenCV write the ``moov`` index last, so a file cut short loses it and
    nothing decodes; a faststart file cut short still decodes up to the cut. Chunk
    offsets (``stco``/``co64``) are shifted by the size of the moved ``moov``.

    Raises:
        ValueError: ``src`` has no ``moov``/``mdat``, is fragmented, or a 32-bit chunk
            offset would overflow.

    Example:
        ```python
        faststart("camera.mp4", "streamable.mp4")
        ```
    """
    with open(src, "rb") as f:
        boxes = list(iter_boxes(f))
        moov = next((b for b in boxes if b.type == "moov"), None)
        mdat = next((b for b in boxes if b.type == "mdat"), None)
        if moov is None or mdat is None:
            raise ValueError(f"{src}: needs both moov and mdat boxes to faststart")
        if any(b.type == "moof" for b in boxes):
            raise ValueError(f"{src}: fragmented MP4 is already streamable")
        if moov.offset < mdat.offset:
            shutil.copyfile(src, dst)
            return
        f.seek(moov.offset)
        moov_bytes = bytearray(f.read(moov.size))
        _shift_chunk_offsets(moov_bytes, moov.size, src)
        with open(dst, "wb") as out:
            for box in boxes:
                if box is mdat:
                    out.write(moov_bytes)
                if box is not moov:
                    f.seek(box.offset)
                    _copy_exactly(f, out, box.size)


def _starts_like_iso_bmff(f: BinaryIO) -> bool:
    first = next(iter_boxes(f), None)
    return first is not None and first.type in _TOP_LEVEL


def _full_box_version(f: BinaryIO, box: Box | None) -> int | None:
    """Version byte of a "full box" (version + 24-bit flags), None if unreadable."""
    if box is None:
        return None
    f.seek(box.payload_offset)
    head = f.read(4)
    return head[0] if len(head) == 4 else None


def _handler_type(f: BinaryIO, trak: Box) -> str | None:
    hdlr = find_box(f, ("mdia", "hdlr"), trak.payload_offset, trak.end)
    if hdlr is None:
        return None
    # version/flags (4) and pre_defined (4) precede handler_type.
    f.seek(hdlr.payload_offset + 8)
    return f.read(4).decode("latin-1")


def _shift_chunk_offsets(moov: bytearray, shift: int, name: str | os.PathLike[str]) -> None:
    """Add ``shift`` to every stco/co64 entry inside an in-memory ``moov`` box."""
    f = io.BytesIO(moov)

    def visit(start: int, end: int) -> None:
        for box in iter_boxes(f, start, end):
            if box.type in _CONTAINERS:
                visit(box.payload_offset, box.end)
            elif box.type in ("stco", "co64"):
                fmt = ">I" if box.type == "stco" else ">Q"
                width = struct.calcsize(fmt)
                first = box.payload_offset + 8
                if first > box.end:
                    raise ValueError(f"{name}: {box.type} box is truncated")
                (count,) = struct.unpack_from(">I", moov, box.payload_offset + 4)
                if first + count * width > min(box.end, len(moov)):
                    raise ValueError(f"{name}: {box.type} lists more offsets than it holds")
                for pos in range(first, first + count * width, width):
                    (value,) = struct.unpack_from(fmt, moov, pos)
                    if box.type == "stco" and value + shift > _UINT32_MAX:
                        raise ValueError(f"{name}: stco offset overflows after faststart")
                    struct.pack_into(fmt, moov, pos, value + shift)

    # The moov header itself starts at 0 in the buffer.
    top = next(iter_boxes(f))
    visit(top.payload_offset, top.end)


def _copy_exactly(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    remaining = size
    while remaining:
        chunk = src.read(min(remaining, 1 << 20))
        if not chunk:
            break
        dst.write(chunk)
        remaining -= len(chunk)
