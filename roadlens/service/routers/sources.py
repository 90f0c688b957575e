"""``/sources``: register cameras and vehicles, start and stop their recorders."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response, status

from roadlens.service.models import Source, SourceCreate, SourceStatus, SourceUpdate
from roadlens.service.sources import public_url
from roadlens.service.state import ADMIN, OPERATE, READ, ServiceState, get_state

router = APIRouter(prefix="/sources", tags=["sources"])
SourceIdPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,119}$", max_length=120)]
StateDep = Annotated[ServiceState, Depends(get_state)]


def _public(record: dict[str, Any]) -> Source:
    return Source.model_validate(record | {"url": public_url(record.get("url"))})


@router.get("", response_model=list[Source], dependencies=[Depends(READ)])
def list_sources(state: StateDep) -> list[Source]:
    """Every registered source (URL passwords redacted)."""
    return [_public(r) for r in state.registry.list()]


@router.post(
    "",
    response_model=Source,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(ADMIN)],
    responses={409: {"description": "the id is taken"}},
)
def create_source(body: SourceCreate, state: StateDep) -> Source:
    """Register a source; needs ``admin``."""
    return _public(state.registry.create(body.model_dump()))


@router.get("/status", response_model=list[SourceStatus], dependencies=[Depends(READ)])
def all_status(state: StateDep) -> list[SourceStatus]:
    """Recorder state and last heartbeat of every registered source."""
    return [SourceStatus(**state.recorders.status(r["id"])) for r in state.registry.list()]


@router.get(
    "/{source_id}",
    response_model=Source,
    dependencies=[Depends(READ)],
    responses={404: {"description": "no such source"}},
)
def get_source(source_id: SourceIdPath, state: StateDep) -> Source:
    return _public(state.registry.get(source_id))


@router.patch(
    "/{source_id}",
    response_model=Source,
    dependencies=[Depends(ADMIN)],
    responses={404: {"description": "no such source"}},
)
def update_source(source_id: SourceIdPath, body: SourceUpdate, state: StateDep) -> Source:
    """Change the given fields; needs ``admin``. A running recorder keeps its settings
    until it is stopped and started again."""
    return _public(state.registry.update(source_id, body.model_dump(exclude_unset=True)))


@router.delete(
    "/{source_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(ADMIN)],
    responses={404: {"description": "no such source"}},
)
def delete_source(source_id: SourceIdPath, state: StateDep) -> Response:
    """Stop the source's recorder (if this server runs it) and unregister it."""
    state.registry.get(source_id)
    state.recorders.stop(source_id)
    state.registry.delete(source_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{source_id}/start",
    response_model=SourceStatus,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(OPERATE)],
    responses={404: {"description": "no such source"}, 409: {"description": "already recording"}},
)
def start_source(source_id: SourceIdPath, state: StateDep) -> SourceStatus:
    """Start recording the source into ``<landing>/<id>/``; needs ``operate``."""
    state.recorders.start(state.registry.get(source_id))
    return SourceStatus(**state.recorders.status(source_id))


@router.post(
    "/{source_id}/stop",
    response_model=SourceStatus,
    dependencies=[Depends(OPERATE)],
    responses={404: {"description": "no such source"}},
)
def stop_source(source_id: SourceIdPath, state: StateDep) -> SourceStatus:
    """Stop the recorder (the open chunk is closed and published); needs ``operate``."""
    state.registry.get(source_id)
    state.recorders.stop(source_id)
    return SourceStatus(**state.recorders.status(source_id))


@router.get(
    "/{source_id}/status",
    response_model=SourceStatus,
    dependencies=[Depends(READ)],
    responses={404: {"description": "no such source"}},
)
def source_status(source_id: SourceIdPath, state: StateDep) -> SourceStatus:
    """STARTING, RUNNING, RECONNECTING, ERROR or STOPPED, with the last heartbeat."""
    state.registry.get(source_id)
    return SourceStatus(**state.recorders.status(source_id))
