"""The source registry: cameras and vehicles the service manages, in one JSON file.

``<ROADLENS_HOME>/service/sources.json`` is rewritten atomically
(:func:`roadlens.atomic.write_text_atomic`) with mode 0600 under a lock, so a crash never
leaves half a registry.
A URL may hold ``${VAR}`` placeholders that :func:`expand_url` fills from the environment
when a recorder starts, so passwords need not be stored at all; URLs leave the API only
through :func:`public_url`, which redacts passwords and secret query values.
"""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from roadlens.atomic import write_text_atomic
from roadlens.ids import slugify
from roadlens.redact import redact

_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


class SourceExistsError(ValueError):
    """A source with this id is already registered (a 409)."""


class SourceNotFoundError(LookupError):
    """No source with this id (a 404)."""


def public_url(url: str | None) -> str | None:
    """``url`` as responses show it: passwords and secret query values as ``***``."""
    return None if url is None else redact(url)


def expand_url(url: str, env: dict[str, str] | None = None) -> str:
    """``url`` with ``${VAR}`` replaced from the environment.

    Raises:
        ValueError: a placeholder names an unset variable.
    """
    env = dict(os.environ) if env is None else env

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ValueError(f"source URL needs ${{{name}}}, which is not set on the server")
        return env[name]

    return _PLACEHOLDER.sub(fill, url)


class SourceRegistry:
    """CRUD over the registry file; every method is thread-safe.

    Records are plain dicts with the fields of :class:`roadlens.service.models.Source`
    (timestamps as ISO strings, the URL unredacted).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {s["id"]: s for s in data.get("sources", [])}

    def _save(self, sources: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"version": 1, "sources": list(sources.values())}, indent=2)
        write_text_atomic(self.path, body + "\n", mode=0o600)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted(self._load().values(), key=lambda s: s["id"])

    def get(self, source_id: str) -> dict[str, Any]:
        with self._lock:
            found = self._load().get(source_id)
        if found is None:
            raise SourceNotFoundError(source_id)
        return found

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Register a source; ``id`` defaults to the slug of ``name``.

        Raises:
            SourceExistsError: the id is taken.
            ValueError: the name has no letter or digit to build an id from.
        """
        now = datetime.now(UTC).isoformat()
        record = dict(fields)
        record["id"] = record.get("id") or slugify(record["name"])
        if not record["id"]:
            raise ValueError("name has no letter or digit to build an id from; give an id")
        record |= {"created_at": now, "updated_at": now}
        with self._lock:
            sources = self._load()
            if record["id"] in sources:
                raise SourceExistsError(record["id"])
            sources[record["id"]] = record
            self._save(sources)
        return record

    def update(self, source_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply ``changes``; a ``url`` equal to the stored URL's redacted form is ignored.

        Raises:
            SourceNotFoundError: no such source.
        """
        with self._lock:
            sources = self._load()
            record = sources.get(source_id)
            if record is None:
                raise SourceNotFoundError(source_id)
            changes = dict(changes)
            if "url" in changes and changes["url"] == public_url(record.get("url")):
                del changes["url"]
            record |= changes | {"updated_at": datetime.now(UTC).isoformat()}
            self._save(sources)
        return record

    def delete(self, source_id: str) -> None:
        """Unregister a source (its recorded chunks and lake rows stay).

        Raises:
            SourceNotFoundError: no such source.
        """
        with self._lock:
            sources = self._load()
            if sources.pop(source_id, None) is None:
                raise SourceNotFoundError(source_id)
            self._save(sources)
