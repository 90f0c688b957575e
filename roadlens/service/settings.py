"""Settings of ``roadlens serve``, read from ``ROADLENS_*`` environment variables only.

=============================  ==========================================  =========================
variable                       meaning                                     default
=============================  ==========================================  =========================
ROADLENS_HOME                  home of the lake, landing folder, registry  ``./.roadlens``
ROADLENS_LAKE                  the Parquet lake                            ``$ROADLENS_HOME/lake``
ROADLENS_LANDING               where recorders write chunks                ``$ROADLENS_HOME/landing``
ROADLENS_API_KEYS              ``key:scope,key2:scope`` (plain keys)       (none)
ROADLENS_API_KEY_FILE          hashed key file (see :mod:`.auth`)          (none)
ROADLENS_API_RATE              requests per second per key (token bucket)  ``20``
ROADLENS_API_BURST             bucket size                                 ``40``
ROADLENS_KAFKA_BOOTSTRAP       live feed from Kafka when set               (lake poller)
ROADLENS_KAFKA_PREFIX          topic prefix                                ``roadlens``
ROADLENS_POSTGRES_URL          enables ``store=postgres`` on the queries   (lake only)
ROADLENS_POSTGRES_SCHEMA       schema of the sink's tables                 ``roadlens``
ROADLENS_WS_QUEUE              messages queued per WebSocket client        ``256``
ROADLENS_WS_QUEUE_MB           bytes queued per WebSocket client (MiB)     ``64``
ROADLENS_WS_POLL_S             lake poller interval (s)                    ``0.5``
=============================  ==========================================  =========================

With no key configured the service runs in *open mode*: every request is allowed, and
only from loopback clients (``roadlens serve`` refuses a non-loopback ``--host``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from roadlens.settings import env_number, roadlens_home

DEFAULT_MAX_BODY_BYTES = 1 << 20  # JSON requests only: sources, recorders, queries


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    """``name`` as a number > 0 (:func:`~roadlens.settings.env_number`), else ``default``."""
    return env_number(name, default, kind=float, above=0, env=env)


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the app factory needs; build with :meth:`from_env` or directly in tests.

    Attributes:
        home: ``ROADLENS_HOME``; the source registry lives in ``<home>/service/``.
        lake_root: The Parquet lake that queries read and the poller watches.
        landing: Folder whose ``<source_id>/`` sub-folders receive recorder chunks.
        api_keys: Raw ``ROADLENS_API_KEYS`` value (``key:scope,...``); kept out of repr.
        api_key_file: Path of a hashed key file, or None.
        rate_per_s: Token bucket refill rate per key (requests per second).
        burst: Token bucket capacity per key.
        kafka_bootstrap: Kafka bootstrap servers; empty: the live feed polls the lake.
        kafka_prefix: Topic prefix (``<prefix>.events.v1``).
        ws_queue: Bound of each WebSocket client's queue (messages); a client whose queue
            is full is dropped with close code 1008.
        ws_queue_bytes: The same bound in bytes of queued text (a message larger than it
            is still sent to a client whose queue is empty).
        poll_s: Lake poller interval in seconds.
        postgres_url: PostgreSQL with the sink's tables; empty: queries read the lake only.
        postgres_schema: Schema of those tables.
        max_body_bytes: Largest request body accepted (``ROADLENS_MAX_BODY_BYTES``); a
            larger one gets 413 before any of it is parsed.
    """

    home: Path
    lake_root: Path
    landing: Path
    api_keys: str = field(default="", repr=False)
    api_key_file: Path | None = None
    rate_per_s: float = 20.0
    burst: float = 40.0
    kafka_bootstrap: str = field(default="", repr=False)
    kafka_prefix: str = "roadlens"
    ws_queue: int = 256
    ws_queue_bytes: int = 64 << 20
    poll_s: float = 0.5
    postgres_url: str = field(default="", repr=False)
    postgres_schema: str = "roadlens"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @property
    def registry_path(self) -> Path:
        """The sources registry (JSON, written atomically, mode 0600)."""
        return self.home / "service" / "sources.json"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, lake_root: str | Path | None = None
    ) -> ServiceSettings:
        """Settings from the environment; ``lake_root`` (the CLI's ``--lake``) wins over it.

        Raises:
            ValueError: a numeric variable is not a positive number.
        """
        env = os.environ if env is None else env
        home = roadlens_home(env)
        lake = Path(lake_root or env.get("ROADLENS_LAKE") or home / "lake").resolve()
        landing = Path(env.get("ROADLENS_LANDING") or home / "landing").resolve()
        key_file = env.get("ROADLENS_API_KEY_FILE", "").strip()
        return cls(
            home=home,
            lake_root=lake,
            landing=landing,
            api_keys=env.get("ROADLENS_API_KEYS", "").strip(),
            api_key_file=Path(key_file).resolve() if key_file else None,
            rate_per_s=_positive(env, "ROADLENS_API_RATE", 20.0),
            burst=_positive(env, "ROADLENS_API_BURST", 40.0),
            kafka_bootstrap=env.get("ROADLENS_KAFKA_BOOTSTRAP", "").strip(),
            kafka_prefix=env.get("ROADLENS_KAFKA_PREFIX", "").strip() or "roadlens",
            ws_queue=int(_positive(env, "ROADLENS_WS_QUEUE", 256)),
            ws_queue_bytes=int(_positive(env, "ROADLENS_WS_QUEUE_MB", 64) * (1 << 20)),
            poll_s=_positive(env, "ROADLENS_WS_POLL_S", 0.5),
            postgres_url=env.get("ROADLENS_POSTGRES_URL", "").strip(),
            postgres_schema=env.get("ROADLENS_POSTGRES_SCHEMA", "").strip() or "roadlens",
            max_body_bytes=int(_positive(env, "ROADLENS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
        )
