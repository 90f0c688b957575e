"""Pydantic models of the REST API: request bodies reject unknown or out-of-range fields
with a 422 that names them; responses are what the OpenAPI schema documents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from roadlens.live.status import RecorderState

SourceId = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,119}$", max_length=120)
]
"""A source id: a slug (lower-case letters, digits, ``.``, ``_``, ``-``), safe as a path
segment and a Kafka key."""

# Printable text only: no control characters (NUL, newlines) in names, URLs or paths.
_Printable = StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")
Url = Annotated[str, _Printable, StringConstraints(min_length=1, max_length=2048)]
RulesPath = Annotated[
    str, _Printable, StringConstraints(max_length=1024, pattern=r"^[^\x00-\x1f\x7f]*\.ya?ml$")
]
InputFormat = Literal["v4l2", "video4linux2", "avfoundation", "dshow", "lavfi"]
SourceKind = Literal["camera", "vehicle"]
REQUIRED_FIELDS = frozenset({"name", "kind", "fps", "detection_enabled", "chunk_seconds"})


class SourceFields(BaseModel):
    """Settings shared by create, update and read."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, _Printable, StringConstraints(min_length=1, max_length=200)] | None = None
    kind: SourceKind | None = None
    url: Url | None = Field(
        None,
        description="rtsp/http/udp/... URL, capture device or file the recorder reads; "
        "`${VAR}` is expanded from the server's environment when the recorder starts, "
        "so a password need not be stored. Responses redact passwords.",
    )
    input_format: InputFormat | None = Field(None, description="ffmpeg input format (-f)")
    fps: float | None = Field(None, gt=0, le=60, description="frames sampled per second")
    detection_enabled: bool | None = None
    rules_path: RulesPath | None = Field(None, description="ODE rule set (YAML) of this source")
    chunk_seconds: float | None = Field(None, ge=1, le=3600, description="live chunk length")


class SourceCreate(SourceFields):
    """``POST /sources``: ``id`` defaults to the slug of ``name``."""

    id: SourceId | None = None
    name: Annotated[str, _Printable, StringConstraints(min_length=1, max_length=200)]
    kind: SourceKind = "camera"
    fps: float = Field(5.0, gt=0, le=60)
    detection_enabled: bool = True
    chunk_seconds: float = Field(10.0, ge=1, le=3600)


class SourceUpdate(SourceFields):
    """``PATCH /sources/{id}``: only the given fields change; ``null`` clears an optional one.

    Sending back the redacted URL of a read (``***`` in place of the password) keeps
    the stored password.
    """

    @model_validator(mode="after")
    def _required_stay_set(self) -> SourceUpdate:
        cleared = sorted(
            f for f in REQUIRED_FIELDS & self.model_fields_set if getattr(self, f) is None
        )
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be null")
        return self


class Source(BaseModel):
    """A registered source as the API returns it (URL password redacted)."""

    id: str
    name: str
    kind: SourceKind
    url: str | None = None
    input_format: str | None = None
    fps: float
    detection_enabled: bool
    rules_path: str | None = None
    chunk_seconds: float
    created_at: datetime
    updated_at: datetime


class SourceStatus(BaseModel):
    """A source's recorder state from its status file (``<landing>/<id>/_status.json``)."""

    source_id: str
    state: RecorderState
    running_here: bool = Field(description="a recorder thread of this server records it")
    last_heartbeat: datetime | None = None
    heartbeat_age_s: float | None = None
    started_at: datetime | None = None
    chunks_closed: int = 0
    last_chunk: str | None = None
    reconnect_attempts: int = 0
    last_error: str | None = None


class Video(BaseModel):
    """A video and which of its outputs exist in the lake."""

    video_id: str
    source_id: str
    capture_date: str
    capture_start: datetime | None = None
    registered: bool
    frames: bool
    detections: bool
    events: bool
    heatmap: bool


class Detection(BaseModel):
    """One detection row (the lake's ``detections`` contract)."""

    detection_id: str
    video_id: str
    source_id: str
    vehicle_id: str | None = None
    session_id: str | None = None
    frame_number: int
    pts_sec: float
    captured_at: datetime
    class_id: int
    class_name: str
    confidence: float
    x1: float
    y1: float
    x2: float
    y2: float
    frame_width: int
    frame_height: int
    anchor_u: float
    anchor_v: float
    track_id: int | None = None
    lat: float | None = None
    lon: float | None = None
    heading_deg: float | None = None
    speed_mps: float | None = None


class Event(BaseModel):
    """One ODE event row; ``media`` are URLs under ``/media/`` of its captures and clip."""

    event_id: str
    rule_id: str
    rule_name: str
    trigger: str
    video_id: str
    source_id: str
    vehicle_id: str | None = None
    session_id: str | None = None
    frame_number: int
    pts_sec: float
    captured_at: datetime
    track_id: int | None = None
    class_name: str | None = None
    direction: str | None = None
    value: float | None = None
    detection_ids: list[str] = []
    lat: float | None = None
    lon: float | None = None
    media: list[str] = []
    attributes: str | None = None


class DetectionPage(BaseModel):
    """A page of detections in (captured_at, detection_id) order."""

    items: list[Detection]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: end")


class EventPage(BaseModel):
    """A page of events in (captured_at, event_id) order."""

    items: list[Event]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: end")


class StatsRow(BaseModel):
    """Rows counted in one time bin for one combination of the grouping columns."""

    bin_start: datetime
    count: int
    class_name: str | None = None
    rule_id: str | None = None
    direction: str | None = None


class Stats(BaseModel):
    table: Literal["detections", "events"]
    bin_minutes: int
    group_by: list[str]
    rows: list[StatsRow]


class Health(BaseModel):
    status: Literal["ok"]
    lake_root_exists: bool
    live_feed: Literal["kafka", "lake"]
    postgres: bool = Field(description="store=postgres is available")
    open_mode: bool
    websocket_clients: int
    websocket_dropped: int
