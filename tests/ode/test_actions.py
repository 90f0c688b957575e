"""ODE actions with real components: OpenCV JPEGs, the bundled ffmpeg, a rendered clip, an
aiosmtpd server and a local HTTP server, each on a free port started by the test."""

from __future__ import annotations

import email
import json
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pandas as pd
import pytest

from roadlens.lake import ParquetLake
from roadlens.ode.actions import (
    PRIMARY_COLOR,
    ActionConfigError,
    NotifyError,
    annotate,
    capture,
    crop_box,
    ledger_path,
    media_paths,
    notify_smtp,
    notify_webhook,
    plan_rule,
    record_clip,
    run_actions,
)
from roadlens.ode.rules import parse_rules
from roadlens.registry import VideoRecord
from roadlens.synth.render import render_clip
from roadlens.video import open_capture, probe, sample_video

DATE = "2026-05-04"
VIDEO = "veh-01--clip-0001"
START = datetime(2026, 5, 4, 8, 30, tzinfo=UTC)
W, H = 320, 240
GRAY = 128


# --- fixtures ------------------------------------------------------------------------------


def _frames(folder: Path, n: int = 3) -> pd.DataFrame:
    """``n`` plain gray sampled frames at 5 fps with their JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = folder / f"{i * 6:06d}.jpg"
        cv2.imwrite(str(path), np.full((H, W, 3), GRAY, np.uint8))
        rows.append(
            {
                "video_id": VIDEO,
                "frame_number": i * 6,
                "pts_sec": i * 0.2,
                "captured_at": pd.Timestamp(START) + pd.Timedelta(seconds=i * 0.2),
                "width": W,
                "height": H,
                "image_path": str(path),
            }
        )
    return pd.DataFrame(rows)


def _detections() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "detection_id": ["d0", "d1", "d2", "d3"],
            "video_id": [VIDEO] * 4,
            "frame_number": [0, 6, 6, 12],
            "track_id": pd.array([1, 1, 2, None], dtype="Int64"),
            "x1": [100.0, 110.0, 20.0, 200.0],
            "y1": [80.0, 80.0, 20.0, 150.0],
            "x2": [200.0, 210.0, 60.0, 260.0],
            "y2": [160.0, 160.0, 60.0, 200.0],
            "class_name": ["car", "car", "person", "truck"],
            "confidence": np.array([0.9, 0.91, 0.5, 0.7], np.float32),
        }
    )


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": ["ev-a", "ev-b"],
            "rule_id": ["cars", "cars"],
            "video_id": [VIDEO, VIDEO],
            "frame_number": [6, 12],
            "pts_sec": [0.2, 0.4],
            "captured_at": [
                pd.Timestamp(START) + pd.Timedelta(seconds=0.2),
                pd.Timestamp(START) + pd.Timedelta(seconds=0.4),
            ],
            "track_id": pd.array([1, None], dtype="Int64"),
            "class_name": ["car", None],
            "direction": ["in", None],
            # ev-a: a crossing, samples k (frame 0) and k+1 (frame 6): only k+1 is drawn.
            # ev-b: a frame-level event (no boxes): frame only.
            "detection_ids": [["d0", "d1", "d2"], []],
            "media_paths": [[], []],
        }
    )


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- media layout and capture ------------------------------------------------------------


def test_media_paths_are_derived_from_the_event_id(tmp_path: Path) -> None:
    a = media_paths(tmp_path, DATE, VIDEO, "ev-a")
    assert a == media_paths(tmp_path, DATE, VIDEO, "ev-a")
    assert a.frame == ParquetLake(tmp_path).event_media_dir(DATE, VIDEO) / "ev-a-frame.jpg"
    assert (a.crop.name, a.clip.name) == ("ev-a-crop.jpg", "ev-a-clip.mp4")
    assert a.frame.parent == tmp_path / "media" / "events" / f"date={DATE}" / VIDEO
    with pytest.raises(ValueError, match="event_id"):
        media_paths(tmp_path, DATE, VIDEO, "../escape")


def test_capture_draws_boxes_crops_with_margin_and_is_idempotent(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames")
    lake = tmp_path / "lake"
    empty = capture(_events(), _detections().iloc[:0], frames, root=tmp_path / "e", date=DATE)
    assert [len(p) for p in empty["media_paths"]] == [1, 1]  # no boxes: frames only
    out = capture(_events(), _detections(), frames, root=lake, date=DATE, margin=0.2)
    a = media_paths(lake, DATE, VIDEO, "ev-a")
    b = media_paths(lake, DATE, VIDEO, "ev-b")
    assert out["media_paths"].tolist() == [[str(a.frame), str(a.crop)], [str(b.frame)]]

    image = cv2.imread(str(a.frame))
    assert image.shape == (H, W, 3)
    # The primary box (d1: 110,80 - 210,160) is drawn in red on its left edge at mid height;
    # its inside stays the gray background; d0 (track 1's previous frame) is not drawn.
    edge = image[120, 110].astype(int)
    assert np.abs(edge - PRIMARY_COLOR).max() < 60, edge
    assert np.abs(image[120, 160].astype(int) - GRAY).max() < 10
    assert np.abs(image[120, 100].astype(int) - GRAY).max() < 10  # d0's left edge (x=100)
    # The other box of the pair (d2: person) is drawn too, in the other colour.
    assert np.abs(image[40, 20].astype(int) - GRAY).max() > 60

    crop = cv2.imread(str(a.crop))
    _, (x0, y0, x1, y1) = crop_box(image, {"x1": 110, "y1": 80, "x2": 210, "y2": 160}, 0.2)
    assert (x0, y0, x1, y1) == (90, 64, 230, 176)
    assert crop.shape == (y1 - y0, x1 - x0, 3)
    assert not b.crop.exists()  # nothing to crop in a frame-level event

    before = {p: p.stat().st_size for p in _files(lake)}
    again = capture(out, _detections(), frames, root=lake, date=DATE, margin=0.2)
    assert again["media_paths"].tolist() == out["media_paths"].tolist()  # no duplicate entries
    assert set(_files(lake)) == set(before)  # same files, overwritten: no temp files left


# --- record ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    return render_clip(folder / "drive.mp4", seconds=6.0, fps=30.0, gps=False).video_path


def _duration(path: Path) -> float:
    info = probe(path)
    return info.frame_count / info.fps


def test_record_clip_cuts_pre_and_post_and_clamps(clip: Path, tmp_path: Path) -> None:
    gop = 12 / 30  # OpenCV's mp4v keyframe interval: stream copy may start one GOP early
    copied = record_clip(clip, 3.0, pre_s=1.0, post_s=1.5, out=tmp_path / "copy.mp4")
    assert abs(_duration(copied) - 2.5) <= gop + 1e-6
    exact = record_clip(clip, 3.0, pre_s=1.0, post_s=1.5, out=tmp_path / "exact.mp4", exact=True)
    assert probe(exact).codec.lower() in ("h264", "avc1")
    assert abs(_duration(exact) - 2.5) <= 2 / 30
    # Clamped at the start: t - pre < 0 keeps [0, t + post].
    early = record_clip(clip, 0.5, pre_s=2.0, post_s=1.0, out=tmp_path / "early.mp4", exact=True)
    assert abs(_duration(early) - 1.5) <= 2 / 30
    # Clamped at the end of the 6 s video.
    late = record_clip(clip, 5.5, pre_s=1.0, post_s=3.0, out=tmp_path / "late.mp4", exact=True)
    assert abs(_duration(late) - 1.5) <= 2 / 30
    # A re-run overwrites the same file.
    record_clip(clip, 3.0, pre_s=1.0, post_s=1.5, out=copied)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "copy.mp4",
        "early.mp4",
        "exact.mp4",
        "late.mp4",
    ]


# --- annotate -------------------------------------------------------------------------------


def test_annotate_writes_a_readable_mp4_of_the_sampled_frames(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames", n=5)
    rules = parse_rules(
        {
            "areas": {
                "stop-line": {"line": [[0, 0.5], [1, 0.5]], "normalized": True},
                "zone": {"polygon": [[10, 10], [300, 10], [300, 230]]},
            },
            "rules": [{"id": "cars", "trigger": "always"}],
        }
    )
    out = annotate(
        frames, _detections(), _events(), tmp_path / "a.mp4", areas=rules.areas, counters=True
    )
    info = probe(out)
    assert (info.frame_count, info.width, info.height) == (5, W, H)
    assert info.fps == pytest.approx(5.0)
    capture_ = open_capture(out)
    decoded = []
    while True:
        ok, image = capture_.read()
        if not ok:
            break
        decoded.append(image)
    capture_.release()
    assert len(decoded) == 5
    # The normalized line y = 0.5 * 240 is drawn across the frame (away from boxes).
    assert np.abs(decoded[0][120, 300].astype(int) - GRAY).max() > 40
    # Boxes only on their own sampled frame: d3 (truck, x 200-260 at y 175) is in frame 12
    # (index 2), not in frames 18 and 24, which have no detections.
    assert np.abs(decoded[2][175, 200].astype(int) - GRAY).max() > 40
    assert np.abs(decoded[3][175, 200].astype(int) - GRAY).max() < 25
    # Geometry objects and plain point lists work too.
    from roadlens.ode.geometry import Line, Polygon

    areas = [Line((0, 0), (50, 50)), Polygon([(0, 0), (9, 0), (9, 9)]), [(0, 0), (50, 50)]]
    annotate(frames, _detections(), _events(), tmp_path / "b.mp4", areas=areas)
    assert probe(tmp_path / "b.mp4").frame_count == 5


def test_annotate_a_video_source_keeps_every_frame(clip: Path, tmp_path: Path) -> None:
    out = annotate(clip, _detections(), _events(), tmp_path / "v.mp4")
    assert probe(out).frame_count == probe(clip).frame_count


# --- notify ----------------------------------------------------------------------------------


class _Collect:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    handler = _Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def test_notify_smtp_sends_one_message_per_batch_and_the_ledger_stops_a_second(
    smtp_server, tmp_path: Path
) -> None:
    controller, handler = smtp_server
    kwargs = {
        "host": controller.hostname,
        "port": controller.port,
        "sender": "roadlens@example.org",
        "to": ["ops@example.org"],
        "subject_template": "{count} event(s) of {rules}",
        "ledger_dir": tmp_path,
    }
    assert notify_smtp(_events(), **kwargs) == 2
    assert len(handler.messages) == 1
    msg = handler.messages[0]
    assert msg["Subject"] == "2 event(s) of cars"
    parts = {p.get_filename() or p.get_content_type(): p for p in msg.walk()}
    assert "ev-a" in parts["text/plain"].get_payload(decode=True).decode()
    sent = json.loads(parts["events.json"].get_payload(decode=True))
    assert [e["event_id"] for e in sent] == ["ev-a", "ev-b"]
    assert sent[0]["detection_ids"] == ["d0", "d1", "d2"]
    assert sent[1]["track_id"] is None

    # A re-run of the partition: nothing new to send.
    assert notify_smtp(_events(), **kwargs) == 0
    assert len(handler.messages) == 1
    ledger = json.loads(ledger_path(tmp_path, VIDEO, "cars").read_text())
    assert list(ledger["channels"].values()) == [["ev-a", "ev-b"]]
    assert all(k.startswith("smtp:") for k in ledger["channels"])


def test_notify_smtp_errors_never_show_the_password(smtp_server) -> None:
    controller, _ = smtp_server
    with pytest.raises(NotifyError) as info:  # the test server offers no AUTH
        notify_smtp(
            _events(),
            host=controller.hostname,
            port=controller.port,
            sender="roadlens@example.org",
            to="ops@example.org",
            username="robot",
            password="s3cret-pw",
        )
    assert "s3cret-pw" not in str(info.value)


# --- SMTP with STARTTLS and AUTH: a self-signed certificate made by the test ------------------

SMTP_USER, SMTP_PASSWORD = "robot", "s3cret-pw"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed CA-style certificate for localhost / 127.0.0.1 and its key (PEM)."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roadlens-test-smtp")])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_pem, key_pem


class _CollectTls(_Collect):
    def __init__(self) -> None:
        super().__init__()
        self.tls: list[bool] = []
        self.logins: list[tuple[str, str]] = []  # (mechanism, user) of successful logins

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        user = auth_data.login.decode()
        ok = user == SMTP_USER and auth_data.password.decode() == SMTP_PASSWORD
        if ok:
            self.logins.append((mechanism, user))
        return AuthResult(success=ok, handled=False)  # handled=False: the server sends 535


@pytest.fixture(params=["PLAIN", "LOGIN"])
def tls_smtp_server(request, tmp_path: Path):
    """An SMTP server that requires STARTTLS and then AUTH (only ``request.param`` offered)."""
    import ssl

    from aiosmtpd.controller import Controller

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = _CollectTls()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=_free_port(),
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=handler.authenticate,
        auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m != request.param],
    )
    controller.start()
    try:
        yield controller, handler, cert, request.param
    finally:
        controller.stop()


def _tls_kwargs(controller, cert: Path, **changes: object) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "host": controller.hostname,
        "port": controller.port,
        "sender": "roadlens@example.org",
        "to": "ops@example.org",
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "starttls": True,
        "cafile": cert,
    }
    return {**kwargs, **changes}


def test_notify_smtp_starttls_and_login_deliver(tls_smtp_server, tmp_path: Path) -> None:
    controller, handler, cert, mechanism = tls_smtp_server
    sent = notify_smtp(_events(), **_tls_kwargs(controller, cert, ledger_dir=tmp_path / "l"))
    assert sent == 2
    assert len(handler.messages) == 1 and handler.tls == [True]
    assert handler.logins == [(mechanism, SMTP_USER)]
    payload = handler.messages[0].get_payload()[0].get_payload(decode=True).decode()
    assert "ev-a" in payload and "ev-b" in payload


def test_notify_smtp_wrong_password_names_host_and_user_not_the_password(
    tls_smtp_server,
) -> None:
    controller, handler, cert, _ = tls_smtp_server
    wrong = "wr0ng-Pa55word"
    with pytest.raises(NotifyError) as info:
        notify_smtp(_events(), **_tls_kwargs(controller, cert, password=wrong))
    text = str(info.value)
    assert f"SMTP 127.0.0.1:{controller.port} as user 'robot'" in text
    assert "login failed" in text and "535" in text
    import base64

    for secret in (wrong, SMTP_PASSWORD, base64.b64encode(wrong.encode()).decode()):
        assert secret not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert handler.messages == [] and handler.logins == []


def test_notify_smtp_verifies_the_certificate_and_requires_starttls(tls_smtp_server) -> None:
    controller, handler, cert, _ = tls_smtp_server
    # No cafile: the self-signed certificate is not trusted, so nothing is sent.
    with pytest.raises(NotifyError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        notify_smtp(_events(), **_tls_kwargs(controller, cert, cafile=None))
    # No STARTTLS: the server refuses AUTH before TLS.
    with pytest.raises(NotifyError, match="as user 'robot'") as info:
        notify_smtp(_events(), **_tls_kwargs(controller, cert, starttls=False))
    assert SMTP_PASSWORD not in str(info.value)
    assert handler.messages == []


def test_run_actions_smtp_config_reads_password_env_and_cafile(
    tls_smtp_server, tmp_path: Path
) -> None:
    controller, handler, cert, mechanism = tls_smtp_server
    smtp = {
        "host": controller.hostname,
        "port": controller.port,
        "sender": "roadlens@example.org",
        "to": "ops@example.org",
        "username": SMTP_USER,
        "password_env": "RL_SMTP_PW",
        "starttls": True,
        "cafile": str(cert),
    }
    rules = parse_rules(
        {"rules": [{"id": "cars", "trigger": "always", "actions": [{"notify": {"smtp": smtp}}]}]}
    )
    args = (_events(), _detections(), _frames(tmp_path / "frames"), rules)
    kwargs = {"lake_root": tmp_path / "lake", "date": DATE, "env": {"RL_SMTP_PW": SMTP_PASSWORD}}
    run_actions(*args, **kwargs)
    run_actions(*args, **kwargs)  # the ledger stops a second e-mail
    assert len(handler.messages) == 1 and handler.logins == [(mechanism, SMTP_USER)]


class _Hook(BaseHTTPRequestHandler):
    statuses: ClassVar[list[int]] = []
    bodies: ClassVar[list[dict]] = []
    auth: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(json.loads(body))
        type(self).auth.append(self.headers.get("Authorization"))
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_server():
    _Hook.statuses, _Hook.bodies, _Hook.auth = [], [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_notify_webhook_retries_a_500_and_the_ledger_stops_a_second(
    hook_server: str, tmp_path: Path
) -> None:
    _Hook.statuses = [500]
    url = f"{hook_server}/hooks/tok-123"
    kwargs = {"url": url, "retries": 2, "backoff_s": 0.01, "ledger_dir": tmp_path}
    assert notify_webhook(_events(), headers={"Authorization": "Bearer k"}, **kwargs) == 2
    assert len(_Hook.bodies) == 2  # the 500, then the success
    body = _Hook.bodies[-1]
    assert body["count"] == 2
    assert [e["event_id"] for e in body["events"]] == ["ev-a", "ev-b"]
    assert _Hook.auth[-1] == "Bearer k"
    assert notify_webhook(_events(), **kwargs) == 0
    assert len(_Hook.bodies) == 2
    # Only a new event goes out on a later run.
    more = pd.concat([_events(), _events().iloc[[0]].assign(event_id="ev-c")], ignore_index=True)
    assert notify_webhook(more, **kwargs) == 1
    assert [e["event_id"] for e in _Hook.bodies[-1]["events"]] == ["ev-c"]


def test_notify_webhook_gives_up_without_leaking_the_url_token(hook_server: str) -> None:
    _Hook.statuses = [503, 503, 503]
    with pytest.raises(NotifyError, match="HTTP 503 after 3 attempt") as info:
        notify_webhook(_events(), url=f"{hook_server}/hooks/tok-123", retries=2, backoff_s=0.01)
    assert "tok-123" not in str(info.value)
    _Hook.statuses = [404]
    with pytest.raises(NotifyError, match="HTTP 404 after 1 attempt"):
        notify_webhook(_events(), url=f"{hook_server}/x", retries=2, backoff_s=0.01)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capture_", "actions", "field"),
    [
        ({"frame": "maybe"}, None, "capture.frame"),
        ({"frame": True, "zoom": 2}, None, "capture.zoom"),
        (None, [{"record": {"pre_s": -1}}], "actions[0].record.pre_s"),
        (None, [{"notify": {"webhook": "ftp://x"}}], "actions[0].notify.webhook.url"),
        (None, [{"notify": {}}], "actions[0].notify"),
        (None, [{"record": {}, "custom": {"function": "a:b"}}], "actions[0]"),
        (None, [{"annotate": {}}, {"explode": {}}], "actions[1].explode"),
        (None, [{"custom": {"function": "not a path"}}], "actions[0].custom.function"),
        (None, [{"notify": {"smtp": {"host": "h", "sender": "a@b", "to": []}}}], "actions[0]"),
    ],
)
def test_invalid_action_config_names_the_rule_and_field(capture_, actions, field) -> None:
    rule = {"id": "stop-line", "trigger": "always"}
    if capture_ is not None:
        rule["capture"] = capture_
    if actions is not None:
        rule["actions"] = actions
    rules = parse_rules({"rules": [{"id": "ok", "trigger": "always"}, rule]})
    with pytest.raises(ActionConfigError) as info:
        run_actions(_events(), _detections(), pd.DataFrame(), rules, lake_root="/x", date=DATE)
    assert f"rule 'stop-line' field '{field}" in str(info.value)


def test_action_shorthands() -> None:
    plan = plan_rule(
        "r", None, [{"record": None}, {"annotate": None}, {"notify": {"webhook": "http://h"}}]
    )
    assert [a.kind for a in plan.actions] == ["record", "annotate", "notify"]
    assert plan.actions[2].notify.webhook.url == "http://h"


# --- the whole stage -----------------------------------------------------------------------

CUSTOM_CALLS: list[list[str]] = []


def record_custom(events: pd.DataFrame, *, tag: str) -> pd.DataFrame:
    """A custom action for the test: remembers its calls, returns one extra media path."""
    CUSTOM_CALLS.append([tag, *events["event_id"]])
    return pd.DataFrame(
        {"event_id": events["event_id"], "media_paths": [[f"x/{tag}"]] * len(events)}
    )


def test_run_actions_over_a_rendered_clip_is_idempotent(
    clip: Path, tmp_path: Path, hook_server: str
) -> None:
    lake = tmp_path / "lake"
    sampled = sample_video(
        clip, 5.0, out_dir=tmp_path / "frames", video_id=VIDEO, start_time=START
    ).table.to_pandas()
    truth = pd.read_parquet(clip.with_suffix(".truth.parquet"))
    dets = truth[truth["frame_number"].isin(sampled["frame_number"])].reset_index(drop=True)
    dets = dets.assign(
        detection_id=[f"d{i}" for i in range(len(dets))],
        video_id=VIDEO,
        confidence=np.float32(0.9),
        track_id=dets["track_id"].astype("Int64"),
    )
    picks = dets[dets["frame_number"] == sampled["frame_number"].iloc[10]].iloc[:2]
    events = pd.DataFrame(
        {
            "event_id": ["ev-1", "ev-2"],
            "rule_id": ["cars", "people"],
            "video_id": VIDEO,
            "frame_number": picks["frame_number"].to_numpy(),
            "pts_sec": picks["pts_sec"].to_numpy(),
            "captured_at": pd.Timestamp(START) + pd.to_timedelta(picks["pts_sec"], unit="s"),
            "track_id": picks["track_id"].to_numpy(),
            "class_name": picks["class_name"].to_numpy(),
            "detection_ids": [[d] for d in picks["detection_id"]],
            "media_paths": [[], []],
        }
    )
    rules = parse_rules(
        {
            "areas": {"mid": {"line": [[0, 180], [640, 180]]}},
            "rules": [
                {
                    "id": "cars",
                    "trigger": "always",
                    "capture": {"frame": True, "crop": True},
                    "actions": [
                        {"record": {"pre_s": 1, "post_s": 1, "exact": True}},
                        {"annotate": None},
                        {"notify": {"webhook": {"url": f"{hook_server}/h", "retries": 0}}},
                        {
                            "custom": {
                                "function": "tests.ode.test_actions:record_custom",
                                "params": {"tag": "t"},
                            }
                        },
                    ],
                },
                {"id": "people", "trigger": "always"},  # no actions: untouched
            ],
        }
    )
    kwargs = {"lake_root": lake, "date": DATE, "video_path": clip}
    CUSTOM_CALLS.clear()
    out = run_actions(events, dets, sampled, rules, **kwargs)
    m = media_paths(lake, DATE, VIDEO, "ev-1")
    annotated = ParquetLake(lake).event_media_dir(DATE, VIDEO) / "annotated-cars.mp4"
    expected = [str(m.frame), str(m.crop), str(m.clip), str(annotated), "x/t"]
    assert out["media_paths"].tolist() == [expected, []]
    assert _duration(m.clip) == pytest.approx(2.0, abs=2 / 30)
    assert probe(annotated).frame_count == len(sampled)
    assert len(_Hook.bodies) == 1 and _Hook.bodies[0]["events"][0]["event_id"] == "ev-1"
    assert CUSTOM_CALLS == [["t", "ev-1"]]

    files = _files(lake)
    again = run_actions(events, dets, sampled, rules, **kwargs)
    assert again["media_paths"].tolist() == out["media_paths"].tolist()
    assert _files(lake) == files  # same paths overwritten, nothing added
    assert len(_Hook.bodies) == 1  # the ledger stopped a second notification


def test_capture_decodes_the_frame_from_the_video_when_the_jpeg_is_missing(
    clip: Path, tmp_path: Path
) -> None:
    frames = _frames(tmp_path / "frames").assign(image_path=None)
    out = capture(_events(), _detections(), frames, root=tmp_path, date=DATE)
    assert out["media_paths"].tolist() == [[], []]  # no JPEG, no video: logged, no media
    out = capture(_events(), _detections(), frames, root=tmp_path, date=DATE, video_path=clip)
    image = cv2.imread(out["media_paths"].iloc[0][0])
    assert image.shape == (360, 640, 3)  # the rendered clip's size, not the fixture's


def _record_of(clip: Path) -> VideoRecord:
    """The registry row of ``clip`` as video VIDEO of veh-01 on DATE."""
    return VideoRecord(
        video_id=VIDEO,
        source_id="veh-01",
        vehicle_id="veh-01",
        session_id="session-a",
        path=str(clip),
        size_bytes=clip.stat().st_size,
        mtime_ns=clip.stat().st_mtime_ns,
        capture_start=START,
        capture_date=DATE,
        capture_time_source="container",
        gps_path=None,
        registered_at=START,
    )


def test_events_are_written_once_with_their_media_paths(clip: Path, tmp_path: Path) -> None:
    import pyarrow as pa

    from roadlens.lake import ParquetLake
    from roadlens.ode.actions import write_events_with_media
    from roadlens.synth.tables import synthetic_events

    lake = ParquetLake(tmp_path / "lake")
    record = _record_of(clip)
    where = {"date": DATE, "source_id": "veh-01", "video_id": VIDEO}
    frames = _frames(tmp_path / "frames")
    lake.write_video("frames", pa.Table.from_pandas(frames, preserve_index=False), **where)
    lake.write_video("detections", pa.Table.from_pandas(_detections()), **where)
    events = synthetic_events(2, video_id=VIDEO).to_pandas()
    events = events.assign(
        event_id=["ev-a", "ev-b"],
        rule_id="cars",
        frame_number=[6, 12],
        track_id=pd.array([1, None], dtype="Int64"),
        detection_ids=[["d1"], []],
    )
    table = pa.Table.from_pandas(events, preserve_index=False)
    table = table.replace_schema_metadata({**table.schema.metadata, b"rule_set_sha256": b"r1"})
    rules = parse_rules(
        {"rules": [{"id": "cars", "trigger": "always", "capture": {"frame": True, "crop": True}}]}
    )
    stats, extra = write_events_with_media(
        lake, record, table, rules, detections=_detections(), frames=frames
    )
    assert (stats.rows, extra["media_files"]) == (2, 3)
    written = lake.read_video("events", VIDEO)
    # The events file keeps the metadata the rules stage gave it (what "current" compares).
    assert written.schema.metadata[b"rule_set_sha256"] == b"r1"
    assert written.column("media_paths").to_pylist() == [
        [
            str(media_paths(lake.root, DATE, VIDEO, "ev-a").frame),
            str(media_paths(lake.root, DATE, VIDEO, "ev-a").crop),
        ],
        [str(media_paths(lake.root, DATE, VIDEO, "ev-b").frame)],
    ]
    assert written.column("track_id").to_pylist() == [1, None]


def test_writing_events_again_removes_media_of_vanished_events(clip: Path, tmp_path: Path) -> None:
    import pyarrow as pa

    from roadlens.lake import ParquetLake
    from roadlens.ode.actions import write_events_with_media
    from roadlens.synth.tables import synthetic_events

    lake = ParquetLake(tmp_path / "lake")
    record = _record_of(clip)
    frames = _frames(tmp_path / "frames")
    three = synthetic_events(3, video_id=VIDEO).to_pandas()
    three = three.assign(
        event_id=["ev-a", "ev-b", "ev-c"],
        rule_id="cars",
        frame_number=[0, 6, 12],
        track_id=pd.array([1, 1, None], dtype="Int64"),
        detection_ids=[["d0"], ["d1"], ["d3"]],
    )
    rules = parse_rules(
        {"rules": [{"id": "cars", "trigger": "always", "capture": {"frame": True, "crop": True}}]}
    )

    def write(events: pd.DataFrame) -> dict[str, object]:
        table = pa.Table.from_pandas(events, preserve_index=False)
        kwargs = {"detections": _detections(), "frames": frames}
        return write_events_with_media(lake, record, table, rules, **kwargs)[1]

    def media_of(eid: str) -> list[Path]:
        m = media_paths(lake.root, DATE, VIDEO, eid)
        return [m.frame, m.crop]

    first = write(three)
    assert (first["media_files"], first["media_removed"]) == (6, 0)
    assert all(p.is_file() for e in ("ev-a", "ev-b", "ev-c") for p in media_of(e))

    folder = lake.event_media_dir(DATE, VIDEO)
    keep_too = [
        folder / "_notified" / "cars.json",  # the sent-ledger: never touched
        folder / "_notified" / "old-frame.jpg",  # media, but in a sub-folder
        folder / "notes.txt",  # not media
        folder / ".ev-z-frame.0123.tmp.jpg",  # another writer's temp file
    ]
    for p in keep_too:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    stale = folder / "ev-old-clip.mp4"
    stale.write_bytes(b"\0")

    # The rules changed: only ev-b remains.
    one = three[three["event_id"] == "ev-b"]
    second = write(one)
    assert (second["media_files"], second["media_removed"]) == (2, 5)
    assert all(p.is_file() for p in media_of("ev-b"))
    assert not any(p.exists() for e in ("ev-a", "ev-c") for p in media_of(e))
    assert not stale.exists()
    assert all(p.is_file() for p in keep_too)
    # A re-run with the same events removes nothing more.
    assert write(one)["media_removed"] == 0
    assert all(p.is_file() for p in media_of("ev-b"))
