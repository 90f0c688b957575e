"""Contract test: a field of a published table cannot change without bumping the version."""

from __future__ import annotations

import pyarrow as pa
import pytest

from roadlens import schema

# The published contract, version 1. Changing a schema means changing this snapshot and
# SCHEMA_VERSION together, on purpose.
DETECTIONS_V1 = [
    ("schema_version", "int16"),
    ("detection_id", "string"),
    ("video_id", "string"),
    ("source_id", "string"),
    ("vehicle_id", "string"),
    ("session_id", "string"),
    ("frame_number", "int64"),
    ("pts_sec", "double"),
    ("captured_at", "timestamp[us, tz=UTC]"),
    ("ingested_at", "timestamp[us, tz=UTC]"),
    ("class_id", "int32"),
    ("class_name", "string"),
    ("confidence", "float"),
    ("x1", "float"),
    ("y1", "float"),
    ("x2", "float"),
    ("y2", "float"),
    ("frame_width", "int32"),
    ("frame_height", "int32"),
    ("anchor_u", "float"),
    ("anchor_v", "float"),
    ("track_id", "int64"),
    ("lat", "double"),
    ("lon", "double"),
    ("heading_deg", "float"),
    ("speed_mps", "float"),
    ("gps_age_s", "float"),
    ("model_name", "string"),
    ("model_sha256", "string"),
]
FRAMES_V1 = [
    ("video_id", "string"),
    ("frame_number", "int64"),
    ("pts_sec", "double"),
    ("captured_at", "timestamp[us, tz=UTC]"),
    ("width", "int32"),
    ("height", "int32"),
    ("image_path", "string"),
]


@pytest.mark.parametrize(
    ("table", "expected"), [(schema.DETECTIONS, DETECTIONS_V1), (schema.FRAMES, FRAMES_V1)]
)
def test_schema_matches_published_contract(
    table: pa.Schema, expected: list[tuple[str, str]]
) -> None:
    assert schema.SCHEMA_VERSION == 1
    assert [(f.name, str(f.type)) for f in table] == expected
    assert table.metadata[b"schema_version"] == b"1"


def test_conform_names_the_missing_columns() -> None:
    with pytest.raises(ValueError, match=r"frames lacks columns \['pts_sec'"):
        schema.conform(pa.table({"video_id": ["v"], "frame_number": [1]}), schema.FRAMES)
