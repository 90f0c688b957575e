"""Videos, detections, events, statistics and media from the lake."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path as PathLike
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import FileResponse

from roadlens.ode.actions import EventMedia, media_paths
from roadlens.service import catalog, lakequery, pgquery
from roadlens.service.catalog import MEDIA_TYPES, MediaError
from roadlens.service.lakequery import Filters, parse_box
from roadlens.service.models import Detection, DetectionPage, Event, EventPage, Stats, Video
from roadlens.service.state import READ, ServiceState, get_state

router = APIRouter(tags=["data"], dependencies=[Depends(READ)])
StateDep = Annotated[ServiceState, Depends(get_state)]
SEGMENT = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,246}$"
Segment = Annotated[str, Path(pattern=SEGMENT, max_length=247)]
PAGE_MAX = 10_000
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "not found"}}

SourceQ = Annotated[list[str], Query(max_length=100, description="source ids (any of)")]
SinceQ = Annotated[datetime | None, Query(description="captured_at >= since (UTC if naive)")]
UntilQ = Annotated[datetime | None, Query(description="captured_at < until (UTC if naive)")]
ClassQ = Annotated[list[str], Query(max_length=100, description="class names (any of)")]
RuleQ = Annotated[list[str], Query(max_length=100, description="rule ids (any of)")]
BboxQ = Annotated[
    str | None,
    Query(max_length=200, description="min_lon,min_lat,max_lon,max_lat (rows with a GPS fix)"),
]
PixelQ = Annotated[
    str | None,
    Query(max_length=200, description="x1,y1,x2,y2: the box's bottom-centre anchor lies inside"),
]
VideoQ = Annotated[str | None, Query(pattern=SEGMENT, max_length=247)]
LimitQ = Annotated[int, Query(ge=1, le=PAGE_MAX)]
StoreQ = Annotated[
    Literal["lake", "postgres"],
    Query(description="read the Parquet lake (default) or the PostgreSQL sink's tables"),
]
CursorQ = Annotated[
    str | None, Query(max_length=2000, description="next_cursor of the previous page")
]


def _filters(
    source_id: list[str],
    video_id: str | None,
    since: datetime | None,
    until: datetime | None,
    class_name: list[str],
    rule_id: list[str],
    bbox: str | None,
    pixel_box: str | None = None,
    min_confidence: float | None = None,
) -> Filters:
    return Filters(
        source_ids=tuple(source_id),
        video_id=video_id,
        since=since,
        until=until,
        class_names=tuple(class_name),
        rule_ids=tuple(rule_id),
        min_confidence=min_confidence,
        bbox=parse_box(bbox, "bbox"),
        pixel_box=parse_box(pixel_box, "pixel_box"),
    )


@router.get("/videos", response_model=list[Video])
def list_videos(
    state: StateDep,
    source_id: SourceQ = [],  # noqa: B006
    date: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
) -> list[Video]:
    """Every video in the lake with its processing state (registered, frames, detections,
    events, heat map present)."""
    wanted = set(source_id)
    return [
        Video(**vars(v))
        for v in catalog.list_videos(state.settings.lake_root)
        if (not wanted or v.source_id in wanted) and (date is None or v.capture_date == date)
    ]


@router.get("/videos/{video_id}", response_model=Video, responses=NOT_FOUND)
def get_video(video_id: Segment, state: StateDep) -> Video:
    for v in catalog.list_videos(state.settings.lake_root):
        if v.video_id == video_id:
            return Video(**vars(v))
    raise HTTPException(404, f"no video {video_id!r} in the lake")


@router.get("/detections", response_model=DetectionPage)
def detections(
    state: StateDep,
    source_id: SourceQ = [],  # noqa: B006
    video_id: VideoQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    class_name: ClassQ = [],  # noqa: B006
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    bbox: BboxQ = None,
    pixel_box: PixelQ = None,
    limit: LimitQ = 100,
    cursor: CursorQ = None,
    store: StoreQ = "lake",
) -> DetectionPage:
    """Detections in (captured_at, detection_id) order, ``limit`` per page."""
    f = _filters(source_id, video_id, since, until, class_name, [], bbox, pixel_box, min_confidence)
    rows, nxt = _page(state, store, "detections", f, limit, cursor)
    return DetectionPage(items=[Detection.model_validate(r) for r in rows], next_cursor=nxt)


def _pg_url(state: ServiceState) -> str:
    if not state.settings.postgres_url:
        raise HTTPException(400, "store=postgres needs ROADLENS_POSTGRES_URL on the server")
    return state.settings.postgres_url


def _page(
    state: ServiceState, store: str, table: str, f: Filters, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    if store == "postgres":
        schema = state.settings.postgres_schema
        return pgquery.page(_pg_url(state), schema, table, f, limit=limit, cursor=cursor)
    return lakequery.page(state.settings.lake_root, table, f, limit=limit, cursor=cursor)


def _event(lake_root: PathLike, row: dict[str, Any]) -> Event:
    media = [u for p in row.pop("media_paths") or [] if (u := catalog.media_url(lake_root, p))]
    row.pop("date", None)
    return Event.model_validate(
        row | {"media": media, "detection_ids": row.get("detection_ids") or []}
    )


@router.get("/events", response_model=EventPage)
def events(
    state: StateDep,
    source_id: SourceQ = [],  # noqa: B006
    video_id: VideoQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    class_name: ClassQ = [],  # noqa: B006
    rule_id: RuleQ = [],  # noqa: B006
    bbox: BboxQ = None,
    limit: LimitQ = 100,
    cursor: CursorQ = None,
    store: StoreQ = "lake",
) -> EventPage:
    """Events in (captured_at, event_id) order, ``limit`` per page."""
    f = _filters(source_id, video_id, since, until, class_name, rule_id, bbox)
    root = state.settings.lake_root
    rows, nxt = _page(state, store, "events", f, limit, cursor)
    return EventPage(items=[_event(root, r) for r in rows], next_cursor=nxt)


@router.get("/stats", response_model=Stats)
def stats(
    state: StateDep,
    table: Literal["detections", "events"] = "events",
    bin_minutes: Literal["5", "15", "60"] = "15",
    group_by: Annotated[
        list[Literal["class_name", "rule_id", "direction"]], Query(max_length=3)
    ] = ["class_name"],  # noqa: B006
    source_id: SourceQ = [],  # noqa: B006
    video_id: VideoQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    class_name: ClassQ = [],  # noqa: B006
    rule_id: RuleQ = [],  # noqa: B006
    bbox: BboxQ = None,
    store: StoreQ = "lake",
) -> Stats:
    """Row counts per time bin (5, 15 or 60 minutes, UTC) and per class/rule/direction."""
    f = _filters(source_id, video_id, since, until, class_name, rule_id, bbox)
    minutes = int(bin_minutes)
    if store == "postgres":
        s = state.settings
        rows = pgquery.stats(
            _pg_url(state), s.postgres_schema, table, f, bin_minutes=minutes, group_by=group_by
        )
    else:
        rows = lakequery.stats(
            state.settings.lake_root, table, f, bin_minutes=minutes, group_by=group_by
        )
    return Stats(
        table=table,
        bin_minutes=int(bin_minutes),
        group_by=list(dict.fromkeys(group_by)),
        rows=rows,  # type: ignore[arg-type]  # pydantic validates the dicts into StatsRow
    )


def _file(path: PathLike) -> FileResponse:
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix.lower()])


@router.get(
    "/frames/{video_id}/{frame_number}.jpg",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, **NOT_FOUND},
)
def frame(
    video_id: Segment, frame_number: Annotated[int, Path(ge=0)], state: StateDep
) -> FileResponse:
    """The sampled JPEG of one frame (``frame_number`` in the source video)."""
    return _file(catalog.frame_image(state.settings.lake_root, video_id, frame_number))


def _event_media(state: ServiceState, event_id: str) -> EventMedia:
    found = lakequery.find_event(state.settings.lake_root, event_id)
    if found is None:
        raise HTTPException(404, f"no event {event_id!r}")
    return media_paths(state.settings.lake_root, found["date"], found["video_id"], event_id)


@router.get(
    "/events/{event_id}/capture",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, **NOT_FOUND},
)
def event_capture(
    event_id: Segment, state: StateDep, kind: Literal["frame", "crop"] = "frame"
) -> FileResponse:
    """The event's captured frame (boxes drawn) or its crop."""
    media = _event_media(state, event_id)
    path = media.frame if kind == "frame" else media.crop
    return _file(_inside(state, path))


@router.get(
    "/events/{event_id}/clip",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}, **NOT_FOUND},
)
def event_clip(event_id: Segment, state: StateDep) -> FileResponse:
    """The event's MP4 clip (HTTP range requests supported)."""
    return _file(_inside(state, _event_media(state, event_id).clip))


def _inside(state: ServiceState, path: PathLike) -> PathLike:
    """``path`` if it is a media file inside the lake (see :func:`catalog.resolve_media`)."""
    url = catalog.media_url(state.settings.lake_root, str(path))
    if url is None:
        raise MediaError("not in the lake")
    return catalog.resolve_media(state.settings.lake_root, url.removeprefix("/media/"))


@router.get(
    "/heatmaps/{video_id}.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, **NOT_FOUND},
)
def heatmap(
    video_id: Segment,
    state: StateDep,
    heatmap_id: Annotated[str, Query(pattern=SEGMENT, max_length=247)] = "dwell",
) -> FileResponse:
    """A video's rendered heat map overlay."""
    return _file(catalog.heatmap_image(state.settings.lake_root, video_id, heatmap_id))


@router.get(
    "/media/{path:path}",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "video/mp4": {}}}, **NOT_FOUND},
)
def media(path: Annotated[str, Path(max_length=1024)], state: StateDep) -> FileResponse:
    """A file under the lake's ``media/`` folder (as listed in an event's ``media``); paths
    that leave that folder are refused."""
    return _file(catalog.resolve_media(state.settings.lake_root, path))
