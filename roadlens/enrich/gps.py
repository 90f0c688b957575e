"""GPS tracks: read CSV, GPX and NMEA 0183 files and interpolate them onto frame times.

Every reader returns the same *track* frame, one row per fix:

=========== ==================== ============================================
column      dtype                meaning
=========== ==================== ============================================
t           datetime64[us, UTC]  fix time, sorted, unique
lat         float64              WGS84 degrees, in [-90, 90]
lon         float64              WGS84 degrees, in [-180, 180]
heading_deg float64              course over ground in [0, 360), NaN if unknown
speed_mps   float64              ground speed in m/s, NaN if unknown
=========== ==================== ============================================

Bad input is handled the same way by every reader:

- a fix with no time, a NaN / missing / out-of-range lat or lon, or 0/0 (receivers report
  it before their first fix) is dropped, with one :class:`GpsWarning` naming the file and
  the count; a file with no fix left is a :class:`GpsError`;
- fixes are sorted by time (files written out of order are accepted silently);
- fixes sharing a timestamp are collapsed, the last one in the file wins, with one
  :class:`GpsWarning` (NMEA RMC and GGA of one epoch are merged instead, silently);
- gaps are kept: :func:`interpolate_track` never interpolates across a gap longer than
  ``max_gap_s`` (those frames get NaN position, and ``gps_age_s`` says how stale it is).

Example:
    >>> import numpy as np, pandas as pd
    >>> track = pd.DataFrame({
    ...     "t": pd.to_datetime(["2026-05-01T10:00:00Z", "2026-05-01T10:00:02Z"]),
    ...     "lat": [48.0, 48.0], "lon": [11.0, 11.002],
    ...     "heading_deg": [90.0, 90.0], "speed_mps": [10.0, 12.0]})
    >>> frames = pd.Series(pd.to_datetime(["2026-05-01T10:00:01Z"])).dt.as_unit("us")
    >>> out = interpolate_track(track, frames)
    >>> out[["lon", "speed_mps", "gps_age_s"]].round(6).iloc[0].tolist()
    [11.001, 11.0, 1.0]
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from os import PathLike
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

__all__ = [
    "NMEA_SUFFIXES",
    "TRACK_COLUMNS",
    "GpsError",
    "GpsWarning",
    "haversine_m",
    "initial_bearing_deg",
    "interpolate_track",
    "read_csv_track",
    "read_gps_track",
    "read_gpx_track",
    "read_nmea_track",
]

TRACK_COLUMNS = ("t", "lat", "lon", "heading_deg", "speed_mps")
NMEA_SUFFIXES = (".nmea", ".nma", ".txt", ".log")
EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius
KNOT_MPS = 1852.0 / 3600.0

_TIME_COLUMNS = ("timestamp", "time", "datetime", "date_time", "utc", "gps_time")
_OFFSET_COLUMNS = ("t_sec", "t_s", "offset_s", "elapsed_s")
_LAT_COLUMNS = ("lat", "latitude")
_LON_COLUMNS = ("lon", "lng", "long", "longitude")
_HEADING_COLUMNS = ("heading", "heading_deg", "course", "course_deg", "bearing", "cog")
# Speed aliases and the factor that turns them into m/s.
_SPEED_COLUMNS: Mapping[str, float] = {
    "speed": 1.0,
    "speed_mps": 1.0,
    "speed_ms": 1.0,
    "speed_m_s": 1.0,
    "velocity": 1.0,
    "speed_kmh": 1 / 3.6,
    "speed_kph": 1 / 3.6,
    "speed_knots": KNOT_MPS,
    "speed_kn": KNOT_MPS,
}
# An ISO-8601 string that carries its own offset; naive ones take the caller's zone.
_TZ_SUFFIX = r"(?:Z|[+-]\d{2}:?\d{2})\s*$"
_NMEA_LINE = re.compile(
    r"\$(?P<talker>GP|GN|GL|GA|GB|BD)(?P<kind>RMC|GGA),(?P<body>[^*\r\n]*)(?:\*(?P<sum>[0-9A-Fa-f]{2}))?"
)


class GpsError(ValueError):
    """A GPS file that cannot be read; the message names the file and the problem."""


class GpsWarning(UserWarning):
    """A GPS file that was read with losses (e.g. NMEA sentences with bad checksums)."""


def read_gps_track(
    path: str | PathLike[str],
    *,
    start: datetime | None = None,
    date: dt.date | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Read a GPS track, choosing the format by suffix (.csv, .gpx, .nmea/.nma/.txt/.log).

    Args:
        path: the track file.
        start: video start, needed by CSV files with a relative ``t_sec`` column.
        date: UTC date for NMEA files that hold GGA sentences but no RMC (which carry dates).
        tz: time zone of naive CSV timestamps (GPX and NMEA are UTC by definition).

    Returns:
        The track frame (see module docstring): sorted by ``t``, duplicate times collapsed
        (last row wins), fixes with invalid or 0/0 coordinates dropped.

    Raises:
        GpsError: missing or empty file, unknown suffix, missing columns, unparseable
            times or no valid fix.

    Warns:
        GpsWarning: fixes were dropped (invalid position or time) or collapsed (duplicate
            timestamps); the message names the file and the count.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp, "drive_0001.csv")
        ...     _ = path.write_text("t_sec,latitude,longitude\\n0,48.1,11.5\\n2,48.1,11.5003\\n")
        ...     track = read_gps_track(path, start=datetime(2026, 5, 1, 10, tzinfo=UTC))
        >>> track[["t", "lat", "lon"]]
                                  t   lat      lon
        0 2026-05-01 10:00:00+00:00  48.1  11.5000
        1 2026-05-01 10:00:02+00:00  48.1  11.5003
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".gpx", *NMEA_SUFFIXES):
        raise GpsError(f"{path}: unknown GPS file type {path.suffix!r} (csv, gpx or nmea)")
    if suffix == ".csv":
        return read_csv_track(path, start=start, tz=tz)
    if suffix == ".gpx":
        return read_gpx_track(path)
    return read_nmea_track(path, date=date)


def read_csv_track(
    path: str | PathLike[str], *, start: datetime | None = None, tz: str = "UTC"
) -> pd.DataFrame:
    """Read a CSV track with ``timestamp`` (ISO-8601 or epoch s) or ``t_sec`` plus lat/lon.

    Column names are matched case-insensitively with common aliases (``latitude``,
    ``longitude``, ``course``/``bearing`` for heading, ``speed_mps``, ``speed_kmh``...).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp, "drive.csv")
        ...     _ = path.write_text("timestamp,lat,lon,speed\\n2026-05-01T10:00:00Z,48.1,11.5,12.0\\n")
        ...     track = read_csv_track(path)
        >>> track.columns.tolist()
        ['t', 'lat', 'lon', 'heading_deg', 'speed_mps']
        >>> track
                                  t   lat   lon  heading_deg  speed_mps
        0 2026-05-01 10:00:00+00:00  48.1  11.5          NaN       12.0
    """
    path = Path(path)
    _require_content(path)
    try:
        _zone(tz)
    except GpsError as exc:
        raise GpsError(f"{path}: {exc}") from exc
    try:
        raw = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise GpsError(f"{path}: CSV has no header or rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise GpsError(f"{path}: not a readable CSV ({exc})") from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    columns = set(raw.columns)

    def first(names: tuple[str, ...] | Mapping[str, float]) -> str | None:
        return next((n for n in names if n in columns), None)

    time_col, offset_col = first(_TIME_COLUMNS), first(_OFFSET_COLUMNS)
    lat_col, lon_col = first(_LAT_COLUMNS), first(_LON_COLUMNS)
    missing = [
        name
        for name, found in (
            ("timestamp or t_sec", time_col or offset_col),
            ("lat", lat_col),
            ("lon", lon_col),
        )
        if found is None
    ]
    if missing:
        raise GpsError(
            f"{path}: missing required column(s) {', '.join(missing)}"
            f" (found: {', '.join(raw.columns) or 'none'})"
        )
    if raw.empty:
        raise GpsError(f"{path}: no valid fixes (the CSV has a header but no rows)")

    if time_col is not None:
        t = _parse_time_column(raw[time_col], path=path, column=time_col, tz=tz)
    else:
        assert offset_col is not None  # the missing-columns check above
        if start is None:
            raise GpsError(
                f"{path}: column {offset_col!r} holds seconds since the video start;"
                " pass start= (the capture start) to place it in time"
            )
        offsets = pd.to_numeric(raw[offset_col], errors="coerce")
        # NaN/inf or beyond ~30 years cannot be a drive (and overflows datetime64[us]).
        out_of_range = ~(offsets.abs() <= _MAX_OFFSET_S) & offsets.notna()
        _raise_on_bad(
            (offsets.isna() & raw[offset_col].notna()) | out_of_range,
            raw[offset_col],
            path,
            offset_col,
        )
        start_utc = pd.Timestamp(_as_utc(start, tz)).as_unit("us")
        t = (start_utc + pd.to_timedelta(offsets, unit="s")).dt.as_unit("us")

    speed_col = first(_SPEED_COLUMNS)
    heading_col = first(_HEADING_COLUMNS)
    speed = (
        pd.to_numeric(raw[speed_col], errors="coerce") * _SPEED_COLUMNS[speed_col]
        if speed_col
        else np.nan
    )
    heading = pd.to_numeric(raw[heading_col], errors="coerce") if heading_col else np.nan
    track = pd.DataFrame(
        {
            "t": t,
            "lat": pd.to_numeric(raw[lat_col], errors="coerce"),
            "lon": pd.to_numeric(raw[lon_col], errors="coerce"),
            "heading_deg": heading,
            "speed_mps": speed,
        }
    )
    return _finish(track, path)


def read_gpx_track(path: str | PathLike[str]) -> pd.DataFrame:
    """Read the track points of a GPX 1.0 or 1.1 file (any namespace).

    ``<course>``/``<speed>`` (GPX 1.0) or any element in ``<extensions>`` whose local name
    is ``course``, ``heading`` or ``speed`` (e.g. Garmin ``gpxtpx:speed``) are used when
    present; otherwise heading and speed are derived from consecutive positions.

    Example:
        >>> import tempfile
        >>> gpx = (
        ...     '<gpx><trk><trkseg>'
        ...     '<trkpt lat="48.0" lon="11.0"><time>2026-05-01T10:00:00Z</time></trkpt>'
        ...     '<trkpt lat="48.0" lon="11.0002"><time>2026-05-01T10:00:01Z</time></trkpt>'
        ...     '</trkseg></trk></gpx>'
        ... )
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp, "drive.gpx")
        ...     _ = path.write_text(gpx)
        ...     track = read_gpx_track(path)
        >>> track[["heading_deg", "speed_mps"]].round(1)  # derived: due east, ~14.9 m/s
           heading_deg  speed_mps
        0         90.0       14.9
        1         90.0       14.9
    """
    path = Path(path)
    _require_content(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise GpsError(f"{path}: not valid GPX/XML ({exc})") from exc

    # Parsing is per element (XML), everything after it is whole-column.
    rows: list[tuple[str | None, ...]] = []
    for el in root.iter():
        if _local(el.tag) != "trkpt":
            continue
        fields: dict[str, str | None] = {}
        for child in el.iter():
            name = _local(child.tag)
            if name in ("time", "course", "heading", "speed") and name not in fields:
                fields[name] = (child.text or "").strip() or None
        rows.append(
            (
                fields.get("time"),
                el.get("lat"),
                el.get("lon"),
                fields.get("course") or fields.get("heading"),
                fields.get("speed"),
            )
        )
    if not rows:
        raise GpsError(f"{path}: no <trkpt> track points")
    raw = pd.DataFrame(rows, columns=["time", "lat", "lon", "heading", "speed"])
    if raw["time"].isna().all():
        raise GpsError(f"{path}: no <trkpt> has a <time>, so the track cannot be placed in time")
    # A point without <time> cannot be placed; drop it rather than fail the file.
    untimed = int(raw["time"].isna().sum())
    if untimed:
        warnings.warn(
            f"{path}: dropped {untimed} of {len(raw)} <trkpt> without a <time>",
            GpsWarning,
            stacklevel=2,
        )
    raw = raw[raw["time"].notna()]
    track = pd.DataFrame(
        {
            "t": _parse_time_column(raw["time"], path=path, column="<time>", tz="UTC"),
            "lat": pd.to_numeric(raw["lat"], errors="coerce"),
            "lon": pd.to_numeric(raw["lon"], errors="coerce"),
            "heading_deg": pd.to_numeric(raw["heading"], errors="coerce"),
            "speed_mps": pd.to_numeric(raw["speed"], errors="coerce"),
        }
    )
    track = _finish(track, path)
    heading, speed = _derive_motion(track)
    track["heading_deg"] = track["heading_deg"].fillna(pd.Series(heading, index=track.index))
    track["speed_mps"] = track["speed_mps"].fillna(pd.Series(speed, index=track.index))
    return track


def read_nmea_track(path: str | PathLike[str], *, date: dt.date | None = None) -> pd.DataFrame:
    """Read RMC and GGA sentences ($GP, $GN, ... talkers) of an NMEA 0183 log.

    RMC fixes need status ``A``; GGA fixes need quality > 0 and take their date from the
    nearest RMC (or ``date`` when the file has no RMC). Sentences with a wrong checksum or
    malformed fields are skipped and reported in one :class:`GpsWarning`; other sentence
    types and non-NMEA lines are ignored. RMC and GGA of the same second are merged.

    Example:
        >>> import tempfile
        >>> nmea = (
        ...     "$GPRMC,100000.00,A,4806.000,N,01130.000,E,10.0,90.0,010526,,,A*5E\\n"
        ...     "$GPRMC,100001.00,A,4806.000,N,01130.008,E,10.0,90.0,010526,,,A*57\\n"
        ... )
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp, "drive.nmea")
        ...     _ = path.write_text(nmea)
        ...     track = read_nmea_track(path)
        >>> track.round({"lon": 4, "speed_mps": 3})  # 10 knots
                                  t   lat      lon  heading_deg  speed_mps
        0 2026-05-01 10:00:00+00:00  48.1  11.5000         90.0      5.144
        1 2026-05-01 10:00:01+00:00  48.1  11.5001         90.0      5.144
    """
    path = Path(path)
    _require_content(path)
    text = path.read_text(encoding="ascii", errors="replace")

    # Per-line work is limited to finding the sentence and checking its checksum.
    kinds: list[str] = []
    bodies: list[list[str]] = []
    bad = total = 0
    for line in text.splitlines():
        match = _NMEA_LINE.search(line)
        if match is None:
            continue
        total += 1
        payload = f"{match['talker']}{match['kind']},{match['body']}"
        if match["sum"] is not None and _nmea_checksum(payload) != int(match["sum"], 16):
            bad += 1
            continue
        kinds.append(match["kind"])
        parts = match["body"].split(",", _NMEA_FIELDS - 1)
        bodies.append(parts + [""] * (_NMEA_FIELDS - len(parts)))
    if total == 0:
        raise GpsError(f"{path}: no NMEA RMC or GGA sentences")

    fields = pd.DataFrame(bodies, columns=range(_NMEA_FIELDS))
    is_rmc = pd.Series(np.array(kinds) == "RMC", index=fields.index)
    # RMC: time,status,lat,N/S,lon,E/W,knots,course,date  GGA: time,lat,N/S,lon,E/W,quality
    lat_raw = fields[2].where(is_rmc, fields[1])
    lat_hemi = fields[3].where(is_rmc, fields[2])
    lon_raw = fields[4].where(is_rmc, fields[3])
    lon_hemi = fields[5].where(is_rmc, fields[4])
    tod = _nmea_time_of_day(fields[0])
    lat = _nmea_degrees(lat_raw, lat_hemi, "N", "S")
    lon = _nmea_degrees(lon_raw, lon_hemi, "E", "W")
    day = pd.to_datetime(fields[8].where(is_rmc), format="%d%m%y", errors="coerce", utc=True)
    # Status V / quality 0 sentences legitimately have empty fields: not fixes, not errors.
    active = (fields[1] == "A").where(is_rmc, pd.to_numeric(fields[5], errors="coerce") > 0)
    active = active.fillna(False).astype(bool)
    malformed = active & (tod.isna() | lat.isna() | lon.isna() | (is_rmc & day.isna()))
    bad += int(malformed.sum())
    if bad:
        warnings.warn(
            f"{path}: skipped {bad} of {total} RMC/GGA sentences"
            " (bad checksum or malformed fields)",
            GpsWarning,
            stacklevel=2,
        )
    keep = active & ~malformed
    if not keep.any():
        raise GpsError(f"{path}: no valid fixes (no RMC with status A, no GGA with quality > 0)")
    is_rmc, tod, lat, lon, day = is_rmc[keep], tod[keep], lat[keep], lon[keep], day[keep]
    fields = fields[keep]

    if day.notna().any():
        # GGA carries no date: take the nearest earlier RMC's (later one at the file start),
        # shifted a day when the clock wrapped past midnight between the two.
        ref_tod = tod.where(is_rmc)
        ref_day = day.ffill().fillna(day.bfill())
        ref_tod = ref_tod.ffill().fillna(ref_tod.bfill())
        wrap = tod - ref_tod
        shift = np.select([wrap < -43_200, wrap > 43_200], [1, -1], 0)
        day = day.fillna(ref_day + pd.to_timedelta(shift, unit="D"))
    elif date is not None:
        day = pd.Series(pd.Timestamp(date, tz="UTC"), index=tod.index)
    else:
        raise GpsError(
            f"{path}: only GGA sentences, which carry no date; pass date= (UTC) to read it"
        )

    track = pd.DataFrame(
        {
            "t": (day + pd.to_timedelta(tod, unit="s")).dt.round("us").dt.as_unit("us"),
            "lat": lat,
            "lon": lon,
            "heading_deg": pd.to_numeric(fields[7].where(is_rmc), errors="coerce"),
            "speed_mps": pd.to_numeric(fields[6].where(is_rmc), errors="coerce") * KNOT_MPS,
        }
    )
    # RMC and GGA of one epoch are one fix: keep the latest non-null value of each field.
    valid = _valid(track)
    if not valid.any():
        raise GpsError(
            f"{path}: no valid fixes (every one of {len(track)} has an out-of-range or 0/0 lat/lon)"
        )
    _warn_dropped(path, int((~valid).sum()), len(track))
    track = track[valid].groupby("t", sort=True, as_index=False).last()
    return _finish(track, path)


def interpolate_track(
    track: pd.DataFrame,
    times: pd.Series | pd.DatetimeIndex | np.ndarray,
    *,
    max_gap_s: float = 5.0,
) -> pd.DataFrame:
    """Interpolate a track at ``times`` (datetime64, UTC; naive values are taken as UTC).

    lat/lon/speed are linear in time (longitude unwrapped across the antimeridian), heading
    is circular (sin/cos interpolated, so 350° → 10° passes 0°, not 180°). ``gps_age_s`` is
    the distance in seconds to the nearest fix and is always filled. Every other field is NaN
    where a time falls in a gap between fixes longer than ``max_gap_s``, or lies more than
    ``max_gap_s`` before the first / after the last fix; within that tolerance it is clamped
    to the end fix.

    Returns:
        Float64 columns lat, lon, heading_deg, speed_mps, gps_age_s aligned with ``times``
        (same index when ``times`` is a Series).

    Example:
        >>> track = pd.DataFrame({
        ...     "t": pd.to_datetime(["2026-05-01T10:00:00Z", "2026-05-01T10:00:02Z"]),
        ...     "lat": [0.0, 0.0], "lon": [1.0, 1.0],
        ...     "heading_deg": [350.0, 10.0], "speed_mps": [1.0, 1.0]})
        >>> at = pd.to_datetime(["2026-05-01T10:00:01Z", "2026-05-01T10:00:09Z"])
        >>> out = interpolate_track(track, at)
        >>> float(np.cos(np.deg2rad(out["heading_deg"][0]))), bool(np.isnan(out["lat"][1]))
        (1.0, True)
    """
    if not max_gap_s >= 0:  # also refuses NaN
        raise ValueError(f"max_gap_s must be a non-negative number of seconds, got {max_gap_s}")
    index = times.index if isinstance(times, pd.Series) else pd.RangeIndex(len(times))
    x_us = _epoch_us(times)
    out = pd.DataFrame(
        np.nan, index=index, columns=["lat", "lon", "heading_deg", "speed_mps", "gps_age_s"]
    )
    missing = [c for c in TRACK_COLUMNS if c not in track.columns]
    if missing:
        raise ValueError(f"track lacks columns {missing}")
    track = _clean(track)
    if track.empty or len(x_us) == 0:
        return out

    t_us = _epoch_us(track["t"])
    # Seconds relative to the first fix keep float64 precision at the microsecond.
    origin = t_us[0]
    tt = (t_us - origin) / 1e6
    x = np.where(x_us == _NAT, np.nan, (x_us - origin) / 1e6)
    n = len(tt)
    j = np.searchsorted(tt, x, side="right")
    left, right = np.clip(j - 1, 0, n - 1), np.clip(j, 0, n - 1)
    span = tt[right] - tt[left]
    weight = np.clip(np.divide(x - tt[left], span, out=np.zeros_like(x), where=span > 0), 0, 1)
    age = np.minimum(np.abs(x - tt[left]), np.abs(tt[right] - x))
    inside = (j > 0) & (j < n)
    # Inside the track the gap must be small (a time exactly on a fix always has one);
    # outside it the distance to the end fix must be small.
    valid = np.where(inside, (span <= max_gap_s) | (age == 0), age <= max_gap_s)
    valid &= ~np.isnan(x)

    def lerp(values: np.ndarray) -> np.ndarray:
        a, b = values[left], values[right]
        # Exact endpoints avoid NaN * 0 leaking an unknown neighbour into a known fix.
        return np.select([weight == 0, weight == 1], [a, b], a + (b - a) * weight)

    lon_unwrapped = np.rad2deg(np.unwrap(np.deg2rad(track["lon"].to_numpy(np.float64))))
    lon = lerp(lon_unwrapped)
    lon = np.where(lon > 180.0, lon - 360.0, np.where(lon < -180.0, lon + 360.0, lon))
    rad = np.deg2rad(track["heading_deg"].to_numpy(np.float64))
    heading = np.rad2deg(np.arctan2(lerp(np.sin(rad)), lerp(np.cos(rad)))) % 360.0
    heading = np.where(heading >= 360.0, 0.0, heading)  # -1e-17 % 360 rounds to 360.0
    columns = {
        "lat": lerp(track["lat"].to_numpy(np.float64)),
        "lon": lon,
        "heading_deg": heading,
        "speed_mps": lerp(track["speed_mps"].to_numpy(np.float64)),
        "gps_age_s": age,
    }
    for name, values in columns.items():
        # The age stays known in a gap: readers can tell "no fix for 8 s" from "no GPS at all".
        keep = ~np.isnan(x) if name == "gps_age_s" else valid
        out[name] = np.where(keep, values, np.nan)
    return out


def haversine_m(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in metres between arrays of points (degrees).

    >>> round(float(haversine_m(0.0, 0.0, 0.0, 1.0)))
    111195
    """
    p1, p2 = np.deg2rad(lat1), np.deg2rad(lat2)
    dlat, dlon = p2 - p1, np.deg2rad(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def initial_bearing_deg(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Initial great-circle bearing in [0, 360) from point 1 towards point 2 (degrees).

    >>> float(initial_bearing_deg(0.0, 0.0, 0.0, 1.0))
    90.0
    """
    p1, p2 = np.deg2rad(lat1), np.deg2rad(lat2)
    dlon = np.deg2rad(np.asarray(lon2) - np.asarray(lon1))
    y = np.sin(dlon) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dlon)
    return np.rad2deg(np.arctan2(y, x)) % 360.0


# --- helpers -------------------------------------------------------------------------------

_NAT = np.iinfo(np.int64).min
_MAX_OFFSET_S = 1e9  # ~31 years: larger relative times are garbage
_MAX_EPOCH_S = 9e9  # year 2255; datetime64[ns] ends in 2262
_NMEA_FIELDS = 12  # enough for RMC (date is field 8) and GGA (quality is field 5)


def _local(tag: str) -> str:
    """Local name of an ElementTree tag: ``{ns}trkpt`` -> ``trkpt``."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _require_content(path: Path) -> None:
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise GpsError(f"{path}: file not found") from exc
    except OSError as exc:
        raise GpsError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not path.is_file():
        raise GpsError(f"{path}: not a regular file")
    if stat.st_size == 0:
        raise GpsError(f"{path}: file is empty")


def _warn_dropped(path: Path, dropped: int, total: int) -> None:
    if dropped:
        warnings.warn(
            f"{path}: dropped {dropped} of {total} fixes with a missing time or a missing,"
            " out-of-range or 0/0 lat/lon",
            GpsWarning,
            stacklevel=3,
        )


def _as_utc(value: datetime, tz: str = "UTC") -> datetime:
    """A tz-aware UTC datetime; naive values are read in ``tz``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_zone(tz))
    return value.astimezone(UTC)


def _zone(tz: str) -> tzinfo:
    if tz.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GpsError(f"unknown time zone {tz!r}") from exc


def _epoch_us(times: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Int64 Unix microseconds of datetimes (NaT -> int64 min)."""
    idx = pd.DatetimeIndex(times)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.as_unit("us").asi8


def _raise_on_bad(bad: pd.Series, values: pd.Series, path: Path, column: str) -> None:
    if bad.any():
        first = bad.to_numpy().nonzero()[0][0]
        raise GpsError(
            f"{path}: {int(bad.sum())} unparseable or out-of-range value(s) in column {column!r},"
            f" first {values.iloc[first]!r} (data row {first + 1})"
        )


def _parse_time_column(values: pd.Series, *, path: Path, column: str, tz: str) -> pd.Series:
    """Parse ISO-8601 strings or epoch seconds into datetime64[us, UTC]."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum() and values.notna().any():
        # Epoch numbers: seconds, or milliseconds when too large to be seconds (> year 5000).
        unit = "ms" if numeric.abs().median() > 1e11 else "s"
        limit = _MAX_EPOCH_S * (1000 if unit == "ms" else 1)
        # Out-of-range epochs become NaT (reported below) instead of overflowing.
        numeric = numeric.where(numeric.abs() <= limit)
        t = pd.to_datetime(numeric, unit=unit, utc=True, errors="coerce")
    else:
        text = values.astype("string").str.strip()
        aware = text.str.contains(_TZ_SUFFIX, regex=True).fillna(False).astype(bool)
        t = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
        if aware.any():
            t[aware] = pd.to_datetime(
                text[aware], format="ISO8601", utc=True, errors="coerce"
            ).dt.as_unit("us")
        if (~aware).any():
            naive = pd.to_datetime(text[~aware], format="ISO8601", errors="coerce")
            if naive.dt.tz is None:
                naive = naive.dt.tz_localize(_zone(tz), ambiguous="NaT", nonexistent="NaT")
            t[~aware] = naive.dt.tz_convert("UTC").dt.as_unit("us")
    _raise_on_bad(t.isna() & values.notna(), values, path, column)
    if t.isna().all():
        raise GpsError(f"{path}: column {column!r} has no timestamps")
    return t.dt.as_unit("us")


def _valid(track: pd.DataFrame) -> pd.Series:
    """Rows with a time and a plausible position."""
    lat, lon = track["lat"].astype("float64"), track["lon"].astype("float64")
    return (
        track["t"].notna()
        & lat.between(-90.0, 90.0)
        & lon.between(-180.0, 180.0)
        & ~((lat == 0.0) & (lon == 0.0))  # receivers report 0/0 before their first fix
    )


def _clean(track: pd.DataFrame) -> pd.DataFrame:
    """Valid fixes only, sorted by time, duplicate times collapsed (last one wins)."""
    track = track.loc[:, list(TRACK_COLUMNS)]
    valid = _valid(track)
    if valid.all() and track["t"].is_monotonic_increasing and track["t"].is_unique:
        return track.reset_index(drop=True)
    track = track[valid].sort_values("t", kind="stable")
    return track.drop_duplicates("t", keep="last").reset_index(drop=True)


def _finish(track: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Clean a freshly read track, fix dtypes and fail when nothing usable is left.

    Warns (:class:`GpsWarning`) with the counts of dropped and of collapsed fixes.
    """
    valid = _valid(track)
    if not valid.any():
        raise GpsError(
            f"{path}: no valid fixes (every one of {len(track)} lacks a time or has a"
            " missing, out-of-range or 0/0 lat/lon)"
        )
    _warn_dropped(path, int((~valid).sum()), len(track))
    duplicates = int(track.loc[valid, "t"].duplicated().sum())
    if duplicates:
        warnings.warn(
            f"{path}: collapsed {duplicates} fixes that repeat an earlier timestamp"
            " (the last one in the file wins)",
            GpsWarning,
            stacklevel=3,
        )
    track = _clean(track)
    heading = track["heading_deg"].astype("float64") % 360.0
    speed = track["speed_mps"].astype("float64")
    return pd.DataFrame(
        {
            "t": track["t"].dt.tz_convert("UTC").dt.as_unit("us"),
            "lat": track["lat"].astype("float64"),
            "lon": track["lon"].astype("float64"),
            "heading_deg": heading,
            "speed_mps": speed.where(speed >= 0),
        }
    )


def _derive_motion(track: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Heading and speed at each fix from its neighbours (central difference).

    Uses the previous and next fix (one-sided at the ends); heading is NaN where the
    vehicle did not move, both are NaN for a single-fix track.
    """
    n = len(track)
    i = np.arange(n)
    prev, nxt = np.maximum(i - 1, 0), np.minimum(i + 1, n - 1)
    lat, lon = track["lat"].to_numpy(np.float64), track["lon"].to_numpy(np.float64)
    t_s = _epoch_us(track["t"]) / 1e6
    dist = haversine_m(lat[prev], lon[prev], lat[nxt], lon[nxt])
    dt = t_s[nxt] - t_s[prev]
    speed = np.divide(dist, dt, out=np.full(n, np.nan), where=dt > 0)
    heading = initial_bearing_deg(lat[prev], lon[prev], lat[nxt], lon[nxt])
    return np.where(dist > 0, heading, np.nan), speed


def _nmea_checksum(payload: str) -> int:
    value = 0
    for byte in payload.encode("ascii", "replace"):
        value ^= byte
    return value


def _nmea_time_of_day(values: pd.Series) -> pd.Series:
    """``hhmmss.sss`` -> seconds since midnight (NaN when malformed)."""
    hhmmss = pd.to_numeric(values, errors="coerce")
    hh, mm, ss = hhmmss // 10_000, (hhmmss // 100) % 100, hhmmss % 100
    ok = (hh < 24) & (mm < 60) & (ss < 61)
    return (hh * 3600 + mm * 60 + ss).where(ok)


def _nmea_degrees(values: pd.Series, hemi: pd.Series, pos: str, neg: str) -> pd.Series:
    """``dddmm.mmmm`` + hemisphere -> signed decimal degrees (NaN when malformed)."""
    v = pd.to_numeric(values, errors="coerce")
    degrees = v // 100 + (v % 100) / 60.0
    sign = pd.Series(np.select([hemi == pos, hemi == neg], [1.0, -1.0], np.nan), index=v.index)
    return degrees * sign
