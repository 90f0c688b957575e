"""Secrets out of every output: one redaction for each form a connection string takes.

A URL's password and secret-looking query values, a scheme-less ``user:password@host``
(a Kafka bootstrap list entry, a PostgreSQL URL typed without its scheme) and a libpq
``password=...`` keyword all become ``***``.

>>> redact("postgresql://app:secret@db:5432/x")
'postgresql://app:***@db:5432/x'
>>> redact("postgres:S3cretPW@127.0.0.1:5432/postgres")
'postgres:***@127.0.0.1:5432/postgres'
>>> redact("app:secret@broker:9092,b2:9092")
'app:***@broker:9092,b2:9092'
>>> redact("host=db user=app password='s e cret' dbname=x")
'host=db user=app password=*** dbname=x'
>>> redact("rtsp://admin:hunter2@camera.example/live?token=abc&ch=1")
'rtsp://admin:***@camera.example/live?token=***&ch=1'
>>> redact("/videos/clip.mp4")
'/videos/clip.mp4'
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["KEYWORD_PASSWORD", "redact", "scrub", "secrets_of", "url_origin"]

KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
"""A libpq ``password=value`` keyword; group 2 is the (possibly quoted) value."""
_SECRET_PARAMS = re.compile(r"pass|pwd|secret|token|key|auth|sig", re.IGNORECASE)


def redact(value: str) -> str:
    """``value`` (a URL, a bootstrap list, a libpq string, a path) with its secrets as ``***``."""
    if "://" in value:
        return _redact_url(value)
    if KEYWORD_PASSWORD.search(value):
        return KEYWORD_PASSWORD.sub(r"\1***", value)
    if "@" in value:
        # Without a scheme each comma-separated entry reads as ``//entry``.
        return ",".join(
            _redact_url(f"//{entry}")[2:] if "@" in entry else entry for entry in value.split(",")
        )
    return value


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    if password is not None:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}{f':{port}' if port else ''}"
        parts = parts._replace(netloc=netloc)
    if parts.query:
        query = [
            (k, "***" if _SECRET_PARAMS.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts) if password is not None or parts.query else url


def url_origin(url: str) -> str:
    """Scheme, host and port only, for URLs whose path or query may be the secret.

    A webhook URL often carries its token in the path (``/services/T0/B0/XXXX``), which
    :func:`redact` keeps; logs and errors about such a URL show only where it points.

    >>> url_origin("https://hooks.example.com:8443/services/T0/B0/s3cret?sig=1")
    'https://hooks.example.com:8443/…'
    >>> url_origin("http://user:pw@127.0.0.1/hook")
    'http://127.0.0.1/…'
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}/…"


def secrets_of(value: str) -> list[str]:
    """The passwords and secret query values ``value`` holds, raw and percent-decoded.

    >>> secrets_of("app:p%40ss@broker:9092")
    ['p%40ss', 'p@ss']
    """
    found = []
    match = KEYWORD_PASSWORD.search(value)
    if match:
        found.append(match.group(2).strip("'"))
    entries = [value] if "://" in value else [f"//{e}" for e in value.split(",") if "@" in e]
    for entry in entries:
        try:
            parts = urlsplit(entry)
            password = parts.password
        except ValueError:
            continue
        if password:
            found += [password, unquote(password)]
        found += [v for k, v in parse_qsl(parts.query) if v and _SECRET_PARAMS.search(k)]
    return [s for s in dict.fromkeys(found) if s]


def scrub(text: str, value: str) -> str:
    """``text`` (say a client library's error about ``value``) with ``value``'s secrets as ``***``.

    Client libraries sometimes echo their connection parameters in exception messages;
    every error a sink raises passes through this before it reaches logs or metadata.

    >>> scrub("login s3cret refused", "amqp://guest:s3cret@host/")
    'login *** refused'
    >>> scrub('missing "=" after "postgres:S3cretPW@db/x"', "postgres:S3cretPW@db/x")
    'missing "=" after "postgres:***@db/x"'
    """
    for secret in secrets_of(value):
        text = text.replace(secret, "***")
    return text
