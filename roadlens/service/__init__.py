"""``roadlens serve``: the REST and WebSocket API over the lake, sources and recorders.

Example:
    ```python
    from roadlens.service import ServiceSettings, create_app

    app = create_app(ServiceSettings.from_env())   # any ASGI server can run it
    ```

See ``docs/service.md`` for endpoints, the auth model and the live feed's latency.
"""

from __future__ import annotations

from roadlens.service.app import create_app
from roadlens.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
