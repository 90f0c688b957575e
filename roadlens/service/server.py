"""Run the service with uvicorn (``roadlens serve``)."""

from __future__ import annotations

from roadlens.service.auth import KeyStore
from roadlens.service.settings import ServiceSettings
from roadlens.service.state import is_loopback


def check_bind(host: str, settings: ServiceSettings) -> None:
    """Refuse to listen beyond loopback when no API key is configured.

    Raises:
        ValueError: ``host`` is not a loopback address and there are no keys.
    """
    if KeyStore(settings.api_keys, settings.api_key_file).open_mode and not is_loopback(host):
        raise ValueError(
            f"no API keys configured: refusing to listen on {host}; set ROADLENS_API_KEYS "
            "or ROADLENS_API_KEY_FILE, or use --host 127.0.0.1"
        )


def serve(
    host: str = "127.0.0.1", port: int = 8765, settings: ServiceSettings | None = None
) -> None:
    """Serve until interrupted.

    Raises:
        ValueError: see :func:`check_bind`; a bad setting.
    """
    import uvicorn

    from roadlens.service.app import create_app

    settings = settings or ServiceSettings.from_env()
    check_bind(host, settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", ws_ping_interval=20)
