"""The FastAPI app factory of ``roadlens serve``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import HTTPConnection

from roadlens.service.catalog import MediaError
from roadlens.service.feeds import KafkaFeed, LakePoller
from roadlens.service.guard import RequestGuard
from roadlens.service.hub import Row
from roadlens.service.lakequery import QueryError
from roadlens.service.models import Health
from roadlens.service.recorders import RecorderConflictError
from roadlens.service.routers import data, live, sources
from roadlens.service.settings import ServiceSettings
from roadlens.service.sources import SourceExistsError, SourceNotFoundError
from roadlens.service.state import ServiceState

STATIC_DIR = Path(__file__).with_name("static")


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """422 with where and why, never the submitted values (a body may be huge or secret)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


async def reject_unknown_query_parameters(request: HTTPConnection) -> None:
    """400 for a query parameter the endpoint does not take: a typo (``sorce=``) must not
    silently widen a query to everything. ``api_key`` is every endpoint's."""
    if request.scope["type"] != "http":
        return  # the WebSocket's parameters are its subscription, checked by the route
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {"api_key"} | {
        p.alias for d in [dependant, *_all_dependencies(dependant)] for p in d.query_params
    }
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise HTTPException(
            400, f"unknown query parameter(s) {unknown}; this endpoint takes {sorted(known)}"
        )


def _all_dependencies(dependant: Any) -> list[Any]:
    found = []
    for sub in dependant.dependencies:
        found += [sub, *_all_dependencies(sub)]
    return found


def _error(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc) or type(exc).__name__}, status_code=status)

    return handler


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The app: REST routers, ``/ws``, ``/health``, the dashboard's static files at ``/``.

    The live feed (Kafka consumer or lake poller) runs for the app's lifespan; recorders
    started through the API are stopped when it ends.
    """
    settings = settings or ServiceSettings.from_env()
    state = ServiceState(settings)

    def publish(table: str, rows: list[Row], origin: str, published_ms: int | None) -> None:
        state.hub.publish(table, rows, origin=origin, published_ms=published_ms)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        feed: KafkaFeed | None = None
        poller: asyncio.Task[None] | None = None
        if settings.kafka_bootstrap:
            state.live_feed = "kafka"
            feed = KafkaFeed(settings.kafka_bootstrap, settings.kafka_prefix)
            feed.start(asyncio.get_running_loop(), publish)
        else:
            state.live_feed = "lake"
            poller = asyncio.create_task(
                LakePoller(settings.lake_root).run(publish, settings.poll_s, stop)
            )
        app.state.feed = feed
        try:
            yield
        finally:
            stop.set()
            if poller is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            if feed is not None:
                await asyncio.to_thread(feed.stop)
            await asyncio.to_thread(state.recorders.stop_all)

    app = FastAPI(
        dependencies=[Depends(reject_unknown_query_parameters)],
        title="RoadLens",
        version="1",
        summary="Sources, detections, events, statistics, media and live feeds of RoadLens.",
        lifespan=lifespan,
    )
    app.state.roadlens = state
    app.add_middleware(
        RequestGuard, open_mode=state.keys.open_mode, max_body_bytes=settings.max_body_bytes
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for exc_type, status in (
        (QueryError, 400),
        (MediaError, 404),
        (SourceNotFoundError, 404),
        (SourceExistsError, 409),
        (RecorderConflictError, 409),
        (FileNotFoundError, 400),
        (ValueError, 400),
    ):
        app.add_exception_handler(exc_type, _error(status))

    @app.get("/health", response_model=Health, tags=["system"])
    def health() -> Health:
        """Liveness and what feeds the live endpoints (no key needed)."""
        return Health(
            status="ok",
            lake_root_exists=settings.lake_root.is_dir(),
            live_feed=state.live_feed,
            postgres=bool(settings.postgres_url),
            open_mode=state.keys.open_mode,
            websocket_clients=len(state.hub.clients),
            websocket_dropped=state.hub.dropped,
        )

    app.include_router(sources.router)
    app.include_router(data.router)
    app.include_router(live.router)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")
    return app
