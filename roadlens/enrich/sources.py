"""Who recorded a video and when: source identity, ``sources.yaml``, GPS sidecars, start time.

Identity comes from the landing folder layout unless ``sources.yaml`` says otherwise:

- ``<landing>/<vehicle_id>/<session_id>/<file>`` -> source = vehicle, with a session;
- ``<landing>/<source_id>/<file>`` -> a source only;
- ``<landing>/<file>`` -> source ``"default"``.

Example:
    >>> from pathlib import Path
    >>> identity_from_path(Path("landing/Van 17/2026-05-01/a.mp4"), Path("landing"))
    SourceIdentity(source_id='van-17', vehicle_id='van-17', session_id='2026-05-01')
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from os import PathLike
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import yaml

from roadlens.camera import ALL_CLASSES, CameraProfile
from roadlens.ids import slugify

__all__ = [
    "GPS_SIDECAR_SUFFIXES",
    "SourceConfigError",
    "SourceIdentity",
    "SourceRule",
    "SourcesConfig",
    "as_utc",
    "find_gps_sidecar",
    "identity_from_path",
    "load_sources",
    "resolve_capture_start",
]

GPS_SIDECAR_SUFFIXES = (".csv", ".gpx", ".nmea", ".nma")
DEFAULT_SOURCE_ID = "default"
# MP4/MOV writers leave creation_time at 0 (1904 or 1970) when the clock was not set.
_EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
_RULE_KEYS = frozenset(
    {
        "source_id",
        "vehicle_id",
        "match",
        "session_id",
        "gps",
        "timezone",
        "rules",
        "kind",
        "sample_fps",
        "classes",
        "keep_frames",
    }
)


class SourceConfigError(ValueError):
    """An invalid ``sources.yaml``; the message names the file, the entry and the key."""


@dataclass(frozen=True)
class SourceIdentity:
    """Who recorded a video: a path-safe ``source_id`` plus optional vehicle and session.

    >>> SourceIdentity("veh-01", "VAN-17", None).source_id
    'veh-01'
    """

    source_id: str
    vehicle_id: str | None
    session_id: str | None


@dataclass(frozen=True)
class SourceRule:
    """One entry of ``sources.yaml``.

    Attributes:
        source_id: slugified source id given to matching videos.
        vehicle_id: vehicle id, or None to take it from the path convention.
        match: glob relative to the landing folder (``veh-01/**``) or an absolute glob;
            ``*`` stays within a folder, ``**`` spans folders.
        session_id: session id, or None to take it from the path convention.
        gps: ``"sidecar"`` (a track next to the video), ``"none"``, or a track file path.
        timezone: IANA zone of naive CSV timestamps.
        rules: the ODE rule file for this source's videos (None: the deployment's).
        camera: the camera kind, sampling rate, classes kept and frames kept.
    """

    source_id: str
    match: str
    vehicle_id: str | None = None
    session_id: str | None = None
    gps: str | Path = "sidecar"
    timezone: str = "UTC"
    rules: Path | None = None
    camera: CameraProfile = field(default_factory=CameraProfile)
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile(_glob_to_regex(self.match)))

    def matches(self, path: Path, landing_root: Path) -> bool:
        """Whether ``path`` matches this rule's glob.

        >>> SourceRule("a", "a/**").matches(Path("in/a/s/x.mp4"), Path("in"))
        True
        """
        if os.path.isabs(self.match):
            return self._pattern.fullmatch(_absolute(path).as_posix()) is not None
        relative = _relative(path, landing_root)
        return relative is not None and self._pattern.fullmatch(relative.as_posix()) is not None


@dataclass(frozen=True)
class SourcesConfig:
    """The rules of a ``sources.yaml``; the first matching rule wins.

    >>> config = SourcesConfig((SourceRule("veh-01", "cam1/**", vehicle_id="VAN-17"),))
    >>> config.identify(Path("in/cam1/2026-05-01/a.mp4"), Path("in"))
    SourceIdentity(source_id='veh-01', vehicle_id='VAN-17', session_id='2026-05-01')
    """

    rules: tuple[SourceRule, ...] = ()
    path: Path | None = None

    def rule_for(
        self, path: str | PathLike[str], landing_root: str | PathLike[str]
    ) -> SourceRule | None:
        """The first rule matching ``path``, or None."""
        path, landing_root = Path(path), Path(landing_root)
        return next((r for r in self.rules if r.matches(path, landing_root)), None)

    def identify(
        self, path: str | PathLike[str], landing_root: str | PathLike[str]
    ) -> SourceIdentity:
        """Identity of the video at ``path``: the first matching rule, else the path layout."""
        rule = self.rule_for(path, landing_root)
        if rule is None:
            return identity_from_path(path, landing_root)
        try:
            conventional = identity_from_path(path, landing_root)
        except ValueError:  # matched by an absolute glob outside the landing folder
            conventional = SourceIdentity(rule.source_id, None, None)
        return SourceIdentity(
            source_id=rule.source_id,
            vehicle_id=rule.vehicle_id if rule.vehicle_id is not None else conventional.vehicle_id,
            session_id=rule.session_id if rule.session_id is not None else conventional.session_id,
        )

    def rules_path_for(
        self, video_path: str | PathLike[str], landing_root: str | PathLike[str]
    ) -> Path | None:
        """The ODE rule file of the source a video belongs to, or None for the default."""
        rule = self.rule_for(video_path, landing_root)
        return rule.rules if rule is not None else None

    def camera_for(
        self, video_path: str | PathLike[str], landing_root: str | PathLike[str]
    ) -> CameraProfile:
        """The camera profile of the source a video belongs to (defaults: a dashcam)."""
        rule = self.rule_for(video_path, landing_root)
        return rule.camera if rule is not None else CameraProfile()

    def gps_path_for(
        self, video_path: str | PathLike[str], landing_root: str | PathLike[str]
    ) -> Path | None:
        """The GPS track for a video: the rule's file, none, or the sidecar (default)."""
        rule = self.rule_for(video_path, landing_root)
        if rule is None or rule.gps == "sidecar":
            return find_gps_sidecar(video_path)
        if rule.gps == "none":
            return None
        return Path(rule.gps)


def identity_from_path(
    path: str | PathLike[str], landing_root: str | PathLike[str]
) -> SourceIdentity:
    """Identity from ``<landing>/<vehicle>/<session>/<file>``, ``<landing>/<source>/<file>``
    or ``<landing>/<file>`` (source ``"default"``); parts are slugified.

    Deeper layouts use the first two folders. A path outside ``landing_root`` is an error.

    >>> identity_from_path("in/veh-01/clip.mp4", "in")
    SourceIdentity(source_id='veh-01', vehicle_id=None, session_id=None)
    >>> identity_from_path("in/clip.mp4", "in").source_id
    'default'
    """
    relative = _relative(Path(path), Path(landing_root))
    if relative is None:
        raise ValueError(f"{path} is not inside the landing folder {landing_root}")
    folders = relative.parts[:-1]
    if not folders:
        return SourceIdentity(DEFAULT_SOURCE_ID, None, None)
    if len(folders) == 1:
        return SourceIdentity(slugify(folders[0]), None, None)
    vehicle = slugify(folders[0])
    return SourceIdentity(vehicle, vehicle, slugify(folders[1]))


def load_sources(yaml_path: str | PathLike[str]) -> SourcesConfig:
    """Load and validate ``sources.yaml`` (safe-loaded); unknown keys are errors.

    A relative ``gps:`` file is taken relative to the YAML file; an empty file or
    ``sources: []`` gives a config with no rules (path convention only).

    Example:
        >>> import tempfile
        >>> text = "sources:\\n  - source_id: veh-01\\n    match: veh-01/**\\n    vehicle_id: VAN-17\\n"
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp, "sources.yaml")
        ...     _ = path.write_text(text)
        ...     config = load_sources(path)
        >>> config.identify("landing/veh-01/a.mp4", "landing")
        SourceIdentity(source_id='veh-01', vehicle_id='VAN-17', session_id=None)
        >>> config.identify("landing/veh-02/a.mp4", "landing")  # no rule: the folder layout
        SourceIdentity(source_id='veh-02', vehicle_id=None, session_id=None)
    """
    yaml_path = Path(yaml_path)
    try:
        document = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SourceConfigError(f"{yaml_path}: invalid YAML ({exc})") from exc
    except OSError as exc:
        raise SourceConfigError(f"{yaml_path}: cannot read ({exc})") from exc
    if document is None:
        return SourcesConfig((), yaml_path)
    if not isinstance(document, dict):
        raise SourceConfigError(f"{yaml_path}: expected a mapping with a 'sources' list")
    unknown = sorted(set(document) - {"sources"})
    if unknown:
        raise SourceConfigError(f"{yaml_path}: unknown top-level key(s) {unknown} (only 'sources')")
    entries = document.get("sources") or []
    if not isinstance(entries, list):
        raise SourceConfigError(f"{yaml_path}: 'sources' must be a list")
    rules = tuple(_parse_rule(entry, i, yaml_path) for i, entry in enumerate(entries))
    return SourcesConfig(rules, yaml_path)


def find_gps_sidecar(video_path: str | PathLike[str]) -> Path | None:
    """The GPS track next to a video: same stem, suffix .csv, .gpx, .nmea or .nma (any case),
    first found in that order.

    >>> find_gps_sidecar("no/such/folder/clip.mp4") is None
    True
    """
    video_path = Path(video_path)
    try:
        # One directory listing instead of probing every case variant of every suffix.
        candidates = {
            entry.name[len(video_path.stem) :].lower(): Path(entry.path)
            for entry in os.scandir(video_path.parent)
            if entry.name.startswith(video_path.stem) and entry.is_file()
        }
    except (FileNotFoundError, NotADirectoryError):
        return None
    return next((candidates[s] for s in GPS_SIDECAR_SUFFIXES if s in candidates), None)


def resolve_capture_start(
    container_time: datetime | None,
    gps_track: pd.DataFrame | None,
    mtime: float,
    duration_s: float,
) -> tuple[datetime, str]:
    """When recording started, and from where: ``"container"``, ``"gps"`` or ``"mtime"``.

    Preference: the container's creation time (naive = UTC; zero dates from unset clocks,
    before 2000, are ignored), else the first GPS fix, else the file's mtime minus the
    duration (mtime is when recording ended). The result is always tz-aware UTC.

    >>> resolve_capture_start(None, None, 1_000_060.0, 60.0)
    (datetime.datetime(1970, 1, 12, 13, 46, 40, tzinfo=datetime.timezone.utc), 'mtime')
    """
    if container_time is not None:
        start = as_utc(container_time)
        if start >= _EARLIEST_PLAUSIBLE:
            return start, "container"
    if gps_track is not None and len(gps_track) and gps_track["t"].notna().any():
        first = pd.Timestamp(gps_track["t"].min())
        first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
        return first.to_pydatetime(), "gps"
    duration = duration_s if math.isfinite(duration_s) and duration_s > 0 else 0.0
    end = datetime.fromtimestamp(mtime, tz=UTC)
    return end - timedelta(seconds=duration), "mtime"


# --- helpers -------------------------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """``value`` as a tz-aware UTC datetime; a naive datetime is taken as UTC.

    >>> as_utc(datetime(2026, 1, 2, 3, 4, 5)).isoformat()
    '2026-01-02T03:04:05+00:00'
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _absolute(path: Path) -> Path:
    # Lexical, not resolve(): a symlinked landing folder must keep its own layout.
    return Path(os.path.normpath(path.absolute()))


def _relative(path: Path, landing_root: Path) -> Path | None:
    try:
        return _absolute(path).relative_to(_absolute(landing_root))
    except ValueError:
        return None


def _glob_to_regex(pattern: str) -> str:
    """Translate a path glob: ``**`` spans folders, ``*``/``?`` stay within one, ``[...]``.

    >>> bool(re.fullmatch(_glob_to_regex("a/**/*.mp4"), "a/x.mp4"))
    True
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:  # per character of a short pattern, once per config load
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and pattern.find("]", i + 2) > 0:
            end = pattern.find("]", i + 2)
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _parse_rule(entry: Any, index: int, yaml_path: Path) -> SourceRule:
    where = f"{yaml_path}: sources[{index}]"
    if not isinstance(entry, dict):
        raise SourceConfigError(f"{where} must be a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _RULE_KEYS)
    if unknown:
        raise SourceConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_RULE_KEYS)}")

    def text(key: str, *, required: bool = False) -> str | None:
        value = entry.get(key)
        if value is None:
            if required:
                raise SourceConfigError(f"{where}: missing required key {key!r}")
            return None
        if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
            raise SourceConfigError(f"{where}: {key!r} must be a non-empty string")
        return str(value)

    raw_source = text("source_id", required=True) or ""
    try:
        source_id = slugify(raw_source)
    except ValueError as exc:
        raise SourceConfigError(f"{where}: 'source_id' {raw_source!r}: {exc}") from exc
    match = text("match") or f"{raw_source}/**"
    tz = text("timezone") or "UTC"
    try:
        if tz.upper() != "UTC":
            ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SourceConfigError(f"{where}: 'timezone' {tz!r} is not a known time zone") from exc
    gps_text = text("gps") or "sidecar"
    gps: str | Path = gps_text
    if gps_text not in ("sidecar", "none"):
        gps_path = Path(gps_text).expanduser()
        gps = gps_path if gps_path.is_absolute() else yaml_path.parent / gps_path
    rules_text = text("rules")
    rules_path: Path | None = None
    if rules_text is not None:
        rules_path = Path(rules_text).expanduser()
        rules_path = rules_path if rules_path.is_absolute() else yaml_path.parent / rules_path
        if not rules_path.is_file():
            raise SourceConfigError(f"{where}: 'rules' file {rules_path} does not exist")
    return SourceRule(
        source_id=source_id,
        match=match,
        vehicle_id=text("vehicle_id"),
        session_id=text("session_id"),
        gps=gps,
        timezone=tz,
        rules=rules_path,
        camera=_parse_camera(entry, where),
    )


def _parse_camera(entry: dict[str, Any], where: str) -> CameraProfile:
    """``kind``, ``sample_fps``, ``classes`` and ``keep_frames`` of one entry."""
    fps = entry.get("sample_fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int | float)):
        raise SourceConfigError(f"{where}: 'sample_fps' must be a number, got {fps!r}")
    classes = entry.get("classes")
    if classes is not None and classes != ALL_CLASSES:
        if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
            raise SourceConfigError(
                f"{where}: 'classes' must be a list of class names or 'all', got {classes!r}"
            )
        classes = tuple(classes)
    try:
        return CameraProfile.of(
            entry.get("kind"), sample_fps=fps, classes=classes, keep_frames=entry.get("keep_frames")
        )
    except ValueError as exc:
        raise SourceConfigError(f"{where}: {exc}") from None
