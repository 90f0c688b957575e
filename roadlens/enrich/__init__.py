"""GPS enrichment: read tracks, identify sources, and turn raw boxes into ``detections``.

>>> from roadlens.enrich import identity_from_path
>>> identity_from_path("landing/veh-01/clip.mp4", "landing").source_id
'veh-01'
"""

from __future__ import annotations

from roadlens.enrich.detections import enrich_detections
from roadlens.enrich.gps import (
    TRACK_COLUMNS,
    GpsError,
    GpsWarning,
    haversine_m,
    initial_bearing_deg,
    interpolate_track,
    read_csv_track,
    read_gps_track,
    read_gpx_track,
    read_nmea_track,
)
from roadlens.enrich.sources import (
    GPS_SIDECAR_SUFFIXES,
    SourceConfigError,
    SourceIdentity,
    SourceRule,
    SourcesConfig,
    find_gps_sidecar,
    identity_from_path,
    load_sources,
    resolve_capture_start,
)

__all__ = [
    "GPS_SIDECAR_SUFFIXES",
    "TRACK_COLUMNS",
    "GpsError",
    "GpsWarning",
    "SourceConfigError",
    "SourceIdentity",
    "SourceRule",
    "SourcesConfig",
    "enrich_detections",
    "find_gps_sidecar",
    "haversine_m",
    "identity_from_path",
    "initial_bearing_deg",
    "interpolate_track",
    "load_sources",
    "read_csv_track",
    "read_gps_track",
    "read_gpx_track",
    "read_nmea_track",
    "resolve_capture_start",
]
