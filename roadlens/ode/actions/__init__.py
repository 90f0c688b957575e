"""ODE actions: capture, record, annotate, notify (SMTP, webhook) and custom callbacks.

Actions run after the engine, per video partition, on the events of the rules that ask for
them (a rule's ``capture`` and ``actions`` in the rule file). They are idempotent per
partition: every media path is derived from the event id (:func:`media_paths`), files are
written to a temp file and moved into place with ``os.replace`` (a re-run overwrites, never
duplicates), and notifications go through a sent-ledger per (video, rule) so a re-run does not
notify twice.

Events are few next to detections, so capture/record loop per *event* (one JPEG or clip each);
boxes are joined to events with whole-column pandas, never a loop per detection.

One module per job; this package re-exports their public names:

- :mod:`~roadlens.ode.actions.media`: media paths, atomic writes, pruning, ``media_paths``.
- :mod:`~roadlens.ode.actions.specs`: the pydantic specs of ``capture``/``actions``.
- :mod:`~roadlens.ode.actions.render`: OpenCV drawing and the annotated video.
- :mod:`~roadlens.ode.actions.snapshots`: ``capture``, frame and crop JPEGs per event.
- :mod:`~roadlens.ode.actions.clips`: ``record``, clips cut with ffmpeg.
- :mod:`~roadlens.ode.actions.notify`: SMTP, webhooks and the sent-ledger.
- :mod:`~roadlens.ode.actions.plugins`: ``custom`` callbacks imported by path.
- :mod:`~roadlens.ode.actions.run`: the per-video stage tying them together.

Example:
    >>> from roadlens.ode.actions import media_paths
    >>> media_paths("/lake", "2026-05-04", "veh-01--clip", "e1").frame.as_posix()
    '/lake/media/events/date=2026-05-04/veh-01--clip/e1-frame.jpg'
"""

from roadlens.ode.actions.clips import record_clip
from roadlens.ode.actions.media import (
    MEDIA_SUFFIXES,
    EventMedia,
    annotated_path,
    media_paths,
    prune_media,
)
from roadlens.ode.actions.notify import (
    NotifyError,
    SentLedger,
    event_records,
    ledger_path,
    notify_smtp,
    notify_webhook,
    summary,
)
from roadlens.ode.actions.plugins import custom, load_callable
from roadlens.ode.actions.render import (
    AREA_COLOR,
    BOX_THICKNESS,
    OTHER_COLOR,
    PRIMARY_COLOR,
    annotate,
    crop_box,
    draw_boxes,
)
from roadlens.ode.actions.run import run_actions, write_events_with_media
from roadlens.ode.actions.snapshots import capture
from roadlens.ode.actions.specs import (
    ACTION_KINDS,
    ActionConfigError,
    ActionSpec,
    AnnotateSpec,
    CaptureSpec,
    CustomSpec,
    NotifySpec,
    RecordSpec,
    RulePlan,
    SmtpSpec,
    WebhookSpec,
    plan_rule,
    plan_rules,
)
from roadlens.video.ffmpeg import ffmpeg_exe

__all__ = [
    "ACTION_KINDS",
    "AREA_COLOR",
    "BOX_THICKNESS",
    "MEDIA_SUFFIXES",
    "OTHER_COLOR",
    "PRIMARY_COLOR",
    "ActionConfigError",
    "ActionSpec",
    "AnnotateSpec",
    "CaptureSpec",
    "CustomSpec",
    "EventMedia",
    "NotifyError",
    "NotifySpec",
    "RecordSpec",
    "RulePlan",
    "SentLedger",
    "SmtpSpec",
    "WebhookSpec",
    "annotate",
    "annotated_path",
    "capture",
    "crop_box",
    "custom",
    "draw_boxes",
    "event_records",
    "ffmpeg_exe",
    "ledger_path",
    "load_callable",
    "media_paths",
    "notify_smtp",
    "notify_webhook",
    "plan_rule",
    "plan_rules",
    "prune_media",
    "record_clip",
    "run_actions",
    "summary",
    "write_events_with_media",
]
