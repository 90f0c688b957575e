"""The configuration of a rule's ``capture`` and ``actions``: pydantic specs and their parsing.

:func:`plan_rule` validates one rule into a :class:`RulePlan`, :func:`plan_rules` every rule of
a rule set; a problem raises :class:`ActionConfigError` naming the rule id and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ActionConfigError(ValueError):
    """A rule's ``capture``/``actions`` that do not validate; names the rule id and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaptureSpec(_Strict):
    """``capture: {frame: true, crop: true, margin: 0.15, jpeg_quality: 90}``."""

    frame: bool = True
    crop: bool = True
    margin: float = Field(default=0.15, ge=0, le=2)  # of the box width/height, per side
    jpeg_quality: int = Field(default=90, ge=1, le=100)


class RecordSpec(_Strict):
    """``record: {pre_s: 5, post_s: 5, exact: false}``."""

    pre_s: float = Field(default=5.0, ge=0)
    post_s: float = Field(default=5.0, ge=0)
    exact: bool = False


class AnnotateSpec(_Strict):
    """``annotate: {areas: true, counters: true}``."""

    areas: bool = True
    counters: bool = True


class SmtpSpec(_Strict):
    """SMTP settings; the password comes from the environment variable ``password_env``."""

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    subject: str = "RoadLens: {count} event(s) of {rules}"
    username: str | None = None
    password_env: str | None = None
    starttls: bool = False
    cafile: str | None = None  # PEM of a CA (or self-signed cert) to trust for STARTTLS

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class WebhookSpec(_Strict):
    """Webhook settings; header values may name environment variables via ``headers_env``."""

    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    headers: dict[str, str] = {}
    headers_env: dict[str, str] = {}  # header name -> environment variable holding its value


class NotifySpec(_Strict):
    """``notify: {smtp: {...}, webhook: "https://..." | {...}}`` (at least one)."""

    smtp: SmtpSpec | None = None
    webhook: WebhookSpec | None = None

    @field_validator("webhook", mode="before")
    @classmethod
    def _url_shorthand(cls, value: object) -> object:
        return {"url": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _some_channel(self) -> NotifySpec:
        if self.smtp is None and self.webhook is None:
            raise ValueError("give smtp and/or webhook")
        return self


class CustomSpec(_Strict):
    """``custom: {function: "pkg.module:fn", params: {...}}``."""

    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    params: dict[str, Any] = {}


ACTION_KINDS = ("record", "annotate", "notify", "custom")


class ActionSpec(_Strict):
    """One entry of a rule's ``actions`` list: exactly one of :data:`ACTION_KINDS`."""

    record: RecordSpec | None = None
    annotate: AnnotateSpec | None = None
    notify: NotifySpec | None = None
    custom: CustomSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_kind(cls, value: object) -> object:
        # `{record: null}` (YAML `- record:`) means the kind with its defaults.
        if isinstance(value, dict):
            value = {
                k: ({} if v is None and k in ("record", "annotate") else v)
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ActionSpec:
        given = [k for k in ACTION_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(ACTION_KINDS)} (got {given or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ACTION_KINDS if getattr(self, k) is not None)

    @property
    def spec(self) -> BaseModel:
        return getattr(self, self.kind)


@dataclass(frozen=True)
class RulePlan:
    """A rule's validated media and actions."""

    rule_id: str
    capture: CaptureSpec | None
    actions: tuple[ActionSpec, ...]


def _path(loc: Sequence[object]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and "[" not in part:  # drop pydantic's union-member names
            out += f".{part}" if out else part
    return out


def plan_rule(rule_id: str, capture: object, actions: object) -> RulePlan:
    """Validate one rule's ``capture`` and ``actions``; errors name the rule id and field.

    >>> plan_rule("r", {"frame": True}, [{"record": {"pre_s": 2}}]).actions[0].record.pre_s
    2.0
    >>> try:
    ...     plan_rule("r", None, [{"record": {"pre_s": -1}}])
    ... except ActionConfigError as exc:
    ...     print(exc)
    rule 'r' field 'actions[0].record.pre_s': Input should be greater than or equal to 0
    """
    problems: list[str] = []
    cap = None
    if capture is not None:
        try:
            cap = CaptureSpec.model_validate(capture)
        except ValidationError as exc:
            problems += [
                f"rule {rule_id!r} field {_path(['capture', *e['loc']])!r}: {e['msg']}"
                for e in exc.errors()
            ]
    specs: list[ActionSpec] = []
    if actions is not None and not isinstance(actions, list):
        problems.append(f"rule {rule_id!r} field 'actions': must be a list of actions")
        actions = []
    for i, item in enumerate(actions or []):
        try:
            specs.append(ActionSpec.model_validate(item))
        except ValidationError as exc:
            problems += [
                f"rule {rule_id!r} field {_path(['actions', i, *e['loc']])!r}: "
                + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            ]
    if problems:
        raise ActionConfigError("; ".join(problems))
    return RulePlan(rule_id, cap, tuple(specs))


def plan_rules(rules: Any) -> dict[str, RulePlan]:
    """Plans of every rule of a :class:`~roadlens.ode.rules.RuleSet` (or list of rules)
    that has a ``capture`` or ``actions``; all problems are reported together."""
    items = getattr(rules, "rules", rules)
    plans, problems = {}, []
    for rule in items:
        if getattr(rule, "capture", None) is None and not getattr(rule, "actions", None):
            continue
        try:
            plans[rule.id] = plan_rule(rule.id, rule.capture, rule.actions)
        except ActionConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ActionConfigError("invalid actions:\n  " + "\n  ".join(problems))
    return plans
