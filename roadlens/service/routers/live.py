"""``/ws``: live detections and events over WebSocket.

Connect to ``/ws`` with the key as ``X-API-Key`` header or ``?api_key=`` (browsers cannot
set headers on WebSockets); ``read`` scope is enough. Optionally subscribe at once with
``?tables=events,detections&sources=cam-1&rules=stop-line``, or send::

    {"action": "subscribe", "tables": ["events"], "sources": ["cam-1"], "rules": []}

The server answers ``{"type": "subscribed", ...}`` and then pushes batches (see
:mod:`roadlens.service.hub`). ``{"action": "ping"}`` gets ``{"type": "pong"}``. A client
that does not read fast enough is closed with code 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from roadlens.service.auth import Scope
from roadlens.service.hub import DROP_CODE, Client, Hub, Subscribe, subscription_from

router = APIRouter(tags=["live"])
# How long a dropped client's handler waits for room to queue the 1008 close frame behind
# what its socket already holds; only this coroutine waits, never the hub or other clients.
DROP_CLOSE_WAIT_S = 30.0


def _split(text: str | None) -> list[str]:
    return [p for p in (text or "").split(",") if p]


@router.websocket("/ws")
async def websocket_feed(websocket: WebSocket) -> None:
    state = websocket.app.state.roadlens
    key = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key")
    host = websocket.client.host if websocket.client else None
    try:
        state.authenticate(key, host, Scope.READ)
    except HTTPException as exc:
        await websocket.close(code=1008, reason=str(exc.detail)[:120])
        return
    await websocket.accept()
    hub: Hub = state.hub
    client = hub.register()
    params = websocket.query_params
    if "tables" in params or "sources" in params or "rules" in params:
        try:
            client.subscription = subscription_from(
                _split(params.get("tables")) or ["events"],
                _split(params.get("sources")),
                _split(params.get("rules")),
            )
            hub.send(client, _ack(client))
        except ValueError as exc:
            hub.send(client, {"type": "error", "detail": str(exc)})
    sender = asyncio.create_task(_send_loop(websocket, client))
    receiver = asyncio.create_task(_receive_loop(websocket, client, hub))
    dropped = asyncio.create_task(client.dropped.wait())
    try:
        await asyncio.wait({sender, receiver, dropped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.unregister(client)
        for task in (sender, receiver, dropped):
            task.cancel()
        if client.dropped.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    websocket.close(code=DROP_CODE, reason="too slow: queue full"),
                    DROP_CLOSE_WAIT_S,
                )


def _ack(client: Client) -> dict[str, Any]:
    sub = client.subscription
    assert sub is not None
    return {
        "type": "subscribed",
        "tables": sorted(sub.tables),
        "sources": sorted(sub.sources),
        "rules": sorted(sub.rules),
    }


async def _send_loop(websocket: WebSocket, client: Client) -> None:
    while True:
        await websocket.send_text(await client.next_message())


async def _receive_loop(websocket: WebSocket, client: Client, hub: Hub) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            raw = await websocket.receive_text()
            try:
                message = json.loads(raw)
                action = message.get("action") if isinstance(message, dict) else None
                if action == "ping":
                    hub.send(client, {"type": "pong"})
                elif action == "unsubscribe":
                    client.subscription = None
                    hub.send(client, {"type": "unsubscribed"})
                else:
                    sub = Subscribe.model_validate(message)
                    client.subscription = subscription_from(sub.tables, sub.sources, sub.rules)
                    hub.send(client, _ack(client))
            except (ValueError, ValidationError) as exc:
                hub.send(client, {"type": "error", "detail": str(exc)[:500]})
