"""The service's shared state and the authentication/rate-limit dependency."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from roadlens.service.auth import KeyStore, Principal, Scope
from roadlens.service.hub import Hub
from roadlens.service.ratelimit import TokenBuckets
from roadlens.service.recorders import RecorderManager
from roadlens.service.settings import ServiceSettings
from roadlens.service.sources import SourceRegistry

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="an API key (or use Authorization: Bearer)"
)
bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")


@dataclass
class ServiceState:
    """Everything request handlers share; one per app."""

    settings: ServiceSettings
    keys: KeyStore = field(init=False)
    buckets: TokenBuckets = field(init=False)
    registry: SourceRegistry = field(init=False)
    recorders: RecorderManager = field(init=False)
    hub: Hub = field(init=False)
    live_feed: Literal["kafka", "lake"] = "lake"

    def __post_init__(self) -> None:
        s = self.settings
        self.keys = KeyStore(s.api_keys, s.api_key_file)
        self.buckets = TokenBuckets(s.rate_per_s, s.burst)
        self.registry = SourceRegistry(s.registry_path)
        self.recorders = RecorderManager(s.landing)
        self.hub = Hub(s.ws_queue, s.ws_queue_bytes)

    def authenticate(self, key: str | None, client_host: str | None, needed: Scope) -> Principal:
        """The caller's principal, after the rate limit and the scope check.

        Raises:
            HTTPException: 401 (no or unknown key), 403 (scope too low, or a non-loopback
                client in open mode), 429 with ``Retry-After`` (bucket empty).
        """
        principal: Principal | None
        if self.keys.open_mode:
            if not is_loopback(client_host):
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    "no API keys are configured: only loopback clients are served",
                )
            principal = Principal("open", Scope.ADMIN)
            self._limit(f"open:{client_host}")
        else:
            principal = self.keys.lookup(key) if key else None
            if principal is None:
                self._limit(f"ip:{client_host}")
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "missing or unknown API key (X-API-Key header or Authorization: Bearer)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            self._limit(f"key:{principal.name}")
        if principal.scope < needed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this key has scope {principal.scope.name.lower()}; "
                f"{needed.name.lower()} is needed",
            )
        return principal

    def _limit(self, bucket: str) -> None:
        wait = self.buckets.take(bucket)
        if wait > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "rate limit exceeded",
                headers={"Retry-After": TokenBuckets.retry_after(wait)},
            )


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a client or bind address) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def get_state(request: Request) -> ServiceState:
    return request.app.state.roadlens


def require(needed: Scope) -> Callable[..., Principal]:
    """A dependency that authenticates the request for ``needed`` scope."""

    def dependency(
        request: Request,
        key: Annotated[str | None, Security(api_key_header)],
        token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Principal:
        presented = key or (token.credentials if token else None)
        host = request.client.host if request.client else None
        return get_state(request).authenticate(presented, host, needed)

    return dependency


READ = require(Scope.READ)
OPERATE = require(Scope.OPERATE)
ADMIN = require(Scope.ADMIN)
