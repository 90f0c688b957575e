"""The ``notify`` action: one e-mail (SMTP) or webhook POST per batch of events.

Notifications cannot be overwritten, so each (video, rule) keeps a sent-ledger
(:class:`SentLedger`, :func:`ledger_path`): ids already sent on a channel are dropped from the
batch, and a re-run does not notify twice. Errors (:class:`NotifyError`) and logs never carry
credentials.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pandas as pd

from roadlens.lake import safe_segment
from roadlens.ode.actions.media import write_json
from roadlens.ode.actions.specs import NotifySpec
from roadlens.redact import url_origin

log = logging.getLogger(__name__)


class NotifyError(RuntimeError):
    """A notification that could not be delivered (credentials never in the message)."""


class SentLedger:
    """Event ids already notified for one (video, rule), per channel, in a JSON file.

    Written atomically after a successful send, so a crash between send and write can at
    worst notify once more; it never loses a notification.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ledger = SentLedger(Path(tmp, "r.json"))
    ...     before = ledger.pending("webhook:ab", ["e1", "e2"])
    ...     ledger.mark("webhook:ab", ["e1"])
    ...     after = ledger.pending("webhook:ab", ["e1", "e2"])
    >>> before, after
    (['e1', 'e2'], ['e2'])
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, list[str]]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text()).get("channels", {})

    def pending(self, channel: str, event_ids: Iterable[str]) -> list[str]:
        sent = set(self.read().get(channel, []))
        return [e for e in event_ids if e not in sent]

    def mark(self, channel: str, event_ids: Iterable[str]) -> None:
        channels = self.read()
        channels[channel] = sorted(set(channels.get(channel, [])) | set(event_ids))
        write_json(self.path, {"channels": channels})


def ledger_path(ledger_dir: str | Path, video_id: str, rule_id: str) -> Path:
    """The sent-ledger of one (video, rule) under ``ledger_dir``."""
    return (
        Path(ledger_dir)
        / safe_segment(video_id, "video_id")
        / "_notified"
        / f"{safe_segment(rule_id, 'rule_id')}.json"
    )


def _channel(kind: str, *parts: object) -> str:
    # A hash, not the address itself: webhook URLs often embed tokens.
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]
    return f"{kind}:{digest}"


def _pending(events: pd.DataFrame, ledger_dir: str | Path | None, channel: str) -> pd.DataFrame:
    if ledger_dir is None or events.empty:
        return events
    keep = np.zeros(len(events), dtype=bool)
    for (video_id, rule_id), idx in events.groupby(["video_id", "rule_id"]).indices.items():
        ledger = SentLedger(ledger_path(ledger_dir, video_id, rule_id))
        todo = set(ledger.pending(channel, events["event_id"].iloc[idx]))
        keep[idx] = events["event_id"].iloc[idx].isin(todo).to_numpy()
    return events[keep]


def _mark(events: pd.DataFrame, ledger_dir: str | Path | None, channel: str) -> None:
    if ledger_dir is None:
        return
    for (video_id, rule_id), group in events.groupby(["video_id", "rule_id"]):
        SentLedger(ledger_path(ledger_dir, video_id, rule_id)).mark(channel, group["event_id"])


def _jsonable(value: object) -> object:
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value


def event_records(events: pd.DataFrame) -> list[dict[str, object]]:
    """Events as JSON-ready dicts (timestamps ISO 8601, lists as lists, NaN as null)."""
    return [{k: _jsonable(v) for k, v in row.items()} for row in events.to_dict("records")]


def summary(events: pd.DataFrame) -> str:
    """A short plain-text summary: one line per event."""
    lines = [f"{len(events)} RoadLens event(s)"]
    for r in events.to_dict("records"):
        track = r.get("track_id")
        track = "" if track is None or pd.isna(track) else f" track {int(track)}"
        direction = r.get("direction")
        direction = f" {direction}" if isinstance(direction, str) else ""
        lines.append(
            f"- {r.get('captured_at')} {r.get('rule_id')} {r.get('video_id')} "
            f"frame {r.get('frame_number')}: {r.get('class_name') or ''}{track}{direction} "
            f"[{r.get('event_id')}]"
        )
    return "\n".join(lines)


def _template_fields(events: pd.DataFrame) -> dict[str, object]:
    return {
        "count": len(events),
        "rules": ", ".join(sorted(map(str, events["rule_id"].unique()))),
        "videos": ", ".join(sorted(map(str, events["video_id"].unique()))),
    }


def notify_smtp(
    events: pd.DataFrame,
    *,
    host: str,
    port: int,
    sender: str,
    to: str | Sequence[str],
    subject_template: str = "RoadLens: {count} event(s) of {rules}",
    username: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    cafile: str | Path | None = None,
    timeout_s: float = 10.0,
    ledger_dir: str | Path | None = None,
) -> int:
    """One e-mail for the batch: a summary body and ``events.json`` attached.

    Returns the number of events sent (0 when the ledger says all were sent already).
    ``subject_template`` may use ``{count}``, ``{rules}``, ``{videos}``. With ``starttls``
    the server's certificate and host name are verified against the system CAs, or against
    ``cafile`` (a PEM file: a private CA or a self-signed server certificate); verification
    is never switched off. ``username``/``password`` log in (AUTH PLAIN or LOGIN, whichever
    the server offers) before sending. Any failure raises :class:`NotifyError` naming the
    host, port and user, never the password.

    >>> notify_smtp(events, host="localhost", port=2525, sender="rl@x", to="ops@x")  # doctest: +SKIP
    3
    """
    recipients = [to] if isinstance(to, str) else list(to)
    channel = _channel("smtp", host, port, sorted(recipients))
    todo = _pending(events, ledger_dir, channel)
    if todo.empty:
        return 0
    msg = EmailMessage()
    msg["Subject"] = subject_template.format(**_template_fields(todo))
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content(summary(todo))
    body = json.dumps(event_records(todo), indent=1).encode()
    msg.add_attachment(body, maintype="application", subtype="json", filename="events.json")
    who = f"SMTP {host}:{port}" + (f" as user {username!r}" if username is not None else "")
    try:
        with smtplib.SMTP(host, port, timeout=timeout_s) as smtp:
            if starttls:
                # smtplib's own default context verifies nothing; this one verifies.
                smtp.starttls(context=ssl.create_default_context(cafile=cafile))
            if username is not None:
                try:
                    smtp.login(username, password or "")
                except smtplib.SMTPAuthenticationError as exc:
                    reason = _smtp_reply(exc, password)
                    raise NotifyError(f"{who}: login failed: {reason}") from None
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        # The exception text is the server's reply or a socket error; scrubbed regardless.
        raise NotifyError(f"{who}: {type(exc).__name__}: {_smtp_reply(exc, password)}") from None
    _mark(todo, ledger_dir, channel)
    log.info("notified %d event(s) by e-mail to %d recipient(s)", len(todo), len(recipients))
    return len(todo)


def _smtp_reply(exc: BaseException, password: str | None) -> str:
    """The error text with the password (plain or in an AUTH PLAIN/LOGIN base64) removed."""
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error
        reply = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        text = f"{exc.smtp_code} {reply}"
    else:
        text = str(exc)
    if password:
        for secret in (password, base64.b64encode(password.encode()).decode()):
            text = text.replace(secret, "***")
    return text


def notify_webhook(
    events: pd.DataFrame,
    *,
    url: str,
    timeout_s: float = 5.0,
    retries: int = 3,
    headers: Mapping[str, str] | None = None,
    backoff_s: float = 0.5,
    ledger_dir: str | Path | None = None,
) -> int:
    """POST one JSON body ``{"count", "summary", "events": [...]}`` for the batch.

    Retries ``retries`` times with exponential backoff (``backoff_s`` × 2^attempt) on
    connection errors, timeouts, 429 and 5xx; other 4xx fail at once. Returns the number
    of events sent (0 when the ledger says all were sent already).

    >>> notify_webhook(events, url="http://localhost:8080/hook")  # doctest: +SKIP
    3
    """
    channel = _channel("webhook", url)
    todo = _pending(events, ledger_dir, channel)
    if todo.empty:
        return 0
    payload = {"count": len(todo), "summary": summary(todo), "events": event_records(todo)}
    data = json.dumps(payload).encode()
    last = ""
    for attempt in range(retries + 1):
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
            _mark(todo, ledger_dir, channel)
            return len(todo)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                break
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"{type(reason).__name__}"
        if attempt < retries:
            log.info("webhook %s: %s, retry %d/%d", url_origin(url), last, attempt + 1, retries)
            time.sleep(backoff_s * 2**attempt)
    raise NotifyError(f"webhook {url_origin(url)}: {last} after {attempt + 1} attempt(s)")


def notify_from_spec(
    events: pd.DataFrame, spec: NotifySpec, env: Mapping[str, str], ledger_dir: Path
) -> None:
    """Send ``events`` on every channel of a rule's ``notify`` spec (SMTP, then webhook).

    Secrets are read from ``env``: the SMTP password from ``password_env``, webhook header
    values from ``headers_env``; a variable that is not set raises :class:`NotifyError`
    before that channel sends. ``ledger_dir`` holds the sent-ledgers (:func:`ledger_path`).
    """
    if spec.smtp is not None:
        s = spec.smtp
        password = env.get(s.password_env) if s.password_env else None
        if s.password_env and password is None:
            raise NotifyError(f"SMTP password variable {s.password_env!r} is not set")
        notify_smtp(
            events,
            host=s.host,
            port=s.port,
            sender=s.sender,
            to=s.to,
            subject_template=s.subject,
            username=s.username,
            password=password,
            starttls=s.starttls,
            cafile=s.cafile,
            ledger_dir=ledger_dir,
        )
    if spec.webhook is not None:
        w = spec.webhook
        missing = [v for v in w.headers_env.values() if v not in env]
        if missing:
            raise NotifyError(f"webhook header variables not set: {missing}")
        headers = {**w.headers, **{h: env[v] for h, v in w.headers_env.items()}}
        notify_webhook(
            events,
            url=w.url,
            timeout_s=w.timeout_s,
            retries=w.retries,
            headers=headers,
            ledger_dir=ledger_dir,
        )
