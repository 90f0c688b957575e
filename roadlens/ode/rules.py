"""The ODE rule file: YAML validated with pydantic v2 into a :class:`RuleSet`.

A rule file has a ``version``, named ``areas`` (lines, polylines, polygons) and a list of
``rules``. Each rule has an ``id``, ``criteria`` (which detections qualify), an optional
``area`` and ``anchor`` (where the box must be), exactly one ``trigger`` kind with its own
parameters, ``firing`` (edge/level, cooldown, limits) and optional ``schedule``,
``capture`` and ``actions`` (parsed and stored for the stages that use them).

Every validation error names the rule and the field path, e.g.
``rule 'stop-line' (rules[2]) field 'trigger.cross.line': unknown area 'stopline'``.

Example:
    >>> rs = parse_rules('''
    ... version: 1
    ... areas:
    ...   stop-line: {line: [[0, 400], [1280, 400]], in_side: right}
    ... rules:
    ...   - id: cars-in
    ...     criteria: {classes: [car]}
    ...     trigger: {cross: {line: stop-line}}
    ... ''')
    >>> rs.rules[0].trigger.kind, len(rs.sha256())
    ('cross', 64)
"""

from __future__ import annotations

import hashlib
import inspect
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from roadlens.ode.geometry import ANCHORS

# The 9 box points of the rule geometry, or any part of the box. Built from ANCHORS at run
# time for pydantic's validation; a static checker cannot expand it and sees an unknown type.
Anchor = Literal[*ANCHORS, "any"]  # type: ignore[valid-type]
Point = tuple[float, float]

# Triggers implemented in roadlens.ode.spatial (this module validates their parameters).
SPATIAL_TRIGGERS = ("cross", "zone", "intersection", "distance", "direction", "stopped", "speed")
# Triggers implemented in roadlens.ode.frame_triggers (parameters checked against the
# function's signature when that module is importable).
FRAME_TRIGGERS = (
    "always",
    "occurrence",
    "instance",
    "absence",
    "count",
    "summation",
    "new_high",
    "new_low",
    "smallest",
    "largest",
    "earliest",
    "latest",
    "persistence",
    "custom",
)
# Composite triggers combine other rules' hits (roadlens.ode.logic).
COMPOSITE_TRIGGERS = ("all", "any", "not", "for_at_least", "sequence")
# Triggers whose test point must be a point (anchor "any" is an area test).
POINT_TRIGGERS = ("cross", "distance", "direction", "stopped", "speed")


class RuleError(ValueError):
    """A rule file that does not validate; the message names the rule id and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- areas -----------------------------------------------------------------------------


class AreaSpec(_Model):
    """One named area: exactly one of ``line``, ``polyline``, ``polygon``.

    ``in_side`` names the positive side of a line walking p1 -> p2 in image coordinates
    (y down): ``right`` is DSL's IN, ``left`` is supervision's ``in``. For polygons,
    ``mode: exclude`` means "outside the polygon" passes.
    """

    line: tuple[Point, Point] | None = None
    polyline: list[Point] | None = Field(default=None, min_length=2)
    polygon: list[Point] | None = Field(default=None, min_length=3)
    extend: bool = False
    in_side: Literal["left", "right"] = "right"
    mode: Literal["include", "exclude"] = "include"
    normalized: bool = False

    @model_validator(mode="after")
    def _one_shape(self) -> AreaSpec:
        given = [k for k in ("line", "polyline", "polygon") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of line, polyline, polygon (got {given or 'none'})")
        pts = self.line or self.polyline or self.polygon or []
        if self.normalized and any(not (0 <= c <= 1) for p in pts for c in p):
            raise ValueError("normalized coordinates must lie in [0, 1]")
        return self

    @property
    def kind(self) -> str:
        """``line``, ``polyline`` or ``polygon``."""
        return "line" if self.line else "polyline" if self.polyline else "polygon"


# --- criteria and firing ---------------------------------------------------------------


class Criteria(_Model):
    """Which detections a rule looks at; every bound is inclusive and optional."""

    classes: list[str] | None = None
    confidence_min: float | None = Field(default=None, ge=0, le=1)
    confidence_max: float | None = Field(default=None, ge=0, le=1)
    width_min: float | None = Field(default=None, ge=0)
    width_max: float | None = Field(default=None, ge=0)
    height_min: float | None = Field(default=None, ge=0)
    height_max: float | None = Field(default=None, ge=0)
    area_min: float | None = Field(default=None, ge=0)
    area_max: float | None = Field(default=None, ge=0)
    aspect_min: float | None = Field(default=None, ge=0)
    aspect_max: float | None = Field(default=None, ge=0)
    min_track_frames: int | None = Field(default=None, ge=1)
    min_track_seconds: float | None = Field(default=None, ge=0)
    sources: list[str] | None = None
    every_nth_frame: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Criteria:
        for name in ("confidence", "width", "height", "area", "aspect"):
            lo, hi = getattr(self, f"{name}_min"), getattr(self, f"{name}_max")
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{name}_min {lo} > {name}_max {hi}")
        return self


class Firing(_Model):
    """How hits become events: ``edge`` fires when a condition starts, ``level`` on every
    hit; ``cooldown_s`` is stream time between events of one subject."""

    mode: Literal["edge", "level"] = "edge"
    cooldown_s: float = Field(default=0.0, ge=0)
    max_events: int | None = Field(default=None, ge=1)
    max_per_track: int | None = Field(default=None, ge=1)


# --- spatial trigger parameters ----------------------------------------------------------


class CrossParams(_Model):
    """Line (or polygon boundary) crossing; see ``docs/ode.md`` for the definition."""

    line: str
    hysteresis_px: float = Field(default=0.0, ge=0)
    hysteresis_s: float = Field(default=0.0, ge=0)
    count: Literal["every", "once"] = "every"
    directions: list[Literal["in", "out"]] = ["in", "out"]


class ZoneParams(_Model):
    """Membership of the anchor (or any part of the box) in a polygon."""

    zone: str
    mode: Literal["include", "exclude"] | None = None  # None: the area's own mode


class PairParams(_Model):
    """Shared by A x B triggers: detections of ``class_a`` against those of ``class_b``."""

    class_a: list[str]
    class_b: list[str]


class IntersectionParams(PairParams):
    """Boxes of A and B in one frame overlap: ``measure`` >= ``min_value``."""

    measure: Literal["area", "iou", "contains"] = "area"
    min_value: float = Field(default=0.0, ge=0)


class DistanceParams(PairParams):
    """Anchor distance between A and B inside (or outside) [min, max]."""

    min: float = Field(default=0.0, ge=0)
    max: float | None = Field(default=None, ge=0)
    unit: Literal["px", "pct_width", "pct_height"] = "px"
    fire: Literal["inside", "outside"] = "inside"


class DirectionParams(_Model):
    """Heading of the anchor's motion in [min_deg, max_deg] (0 = +x, 90 = down)."""

    min_deg: float = Field(ge=-360, le=360)
    max_deg: float = Field(ge=-360, le=360)
    min_distance_px: float = Field(default=2.0, ge=0)
    window_s: float = Field(default=0.0, ge=0)


# A 3x3 matrix, row-major: 3 rows of 3 numbers.
_Row3 = Annotated[list[float], Field(min_length=3, max_length=3)]
Matrix3 = Annotated[list[_Row3], Field(min_length=3, max_length=3)]


class _GroundScale(_Model):
    """How ``speed``/``stopped`` turn pixels into metres: at most one of a single
    ``metres_per_pixel`` scale, a ``homography`` (3x3, image pixels -> ground-plane
    metres) or ``ground_points`` (4+ ``[[u, v], [x, y]]`` pairs it is computed from).
    None of them: speeds are in px/s."""

    metres_per_pixel: float | None = Field(default=None, gt=0)
    homography: Matrix3 | None = None
    ground_points: list[tuple[Point, Point]] | None = Field(default=None, min_length=4)

    @field_validator("homography")
    @classmethod
    def _invertible(cls, h: list[list[float]] | None) -> list[list[float]] | None:
        if h is not None:
            from roadlens.ode.spatial import HomographyError, as_homography

            try:
                as_homography(h)
            except HomographyError as exc:
                raise ValueError(str(exc)) from None
        return h

    @field_validator("ground_points")
    @classmethod
    def _solvable(cls, pts: list[tuple[Point, Point]] | None) -> list[tuple[Point, Point]] | None:
        if pts is not None:
            from roadlens.ode.spatial import HomographyError, homography_from_points

            try:
                homography_from_points(pts)
            except HomographyError as exc:
                raise ValueError(str(exc)) from None
        return pts

    @model_validator(mode="after")
    def _one_scale(self) -> _GroundScale:
        names = ("metres_per_pixel", "homography", "ground_points")
        given = [n for n in names if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give at most one of metres_per_pixel, homography, ground_points "
                f"(got {', '.join(given)})"
            )
        return self


class StoppedParams(_GroundScale):
    """Speed below ``max_speed`` (px/s, or m/s with a ground scale) for ``min_seconds``."""

    max_speed: float = Field(gt=0)
    min_seconds: float = Field(default=1.0, ge=0)
    window_s: float = Field(default=0.0, ge=0)


class SpeedParams(_GroundScale):
    """Speed in [min, max] (px/s, or m/s with ``metres_per_pixel``, ``homography`` or
    ``ground_points``)."""

    min: float = Field(default=0.0, ge=0)
    max: float | None = Field(default=None, ge=0)
    window_s: float = Field(default=0.0, ge=0)


FrameParams = dict[str, Any]


class CompositeParams(_Model):
    """``all``/``any``: the rules whose hits are combined, per frame or per (frame, track)."""

    rules: list[str] = Field(min_length=1)
    per_track: bool = False


class NotParams(_Model):
    """``not``: sampled frames (or (frame, track) pairs) where ``rule`` has no hit."""

    rule: str
    per_track: bool = False


class ForAtLeastParams(_Model):
    """``for_at_least``: ``rule``'s condition held continuously for ``seconds``."""

    rule: str
    seconds: float = Field(ge=0)


class SequenceParams(_Model):
    """``sequence``: a hit of ``then`` within ``within_s`` after a hit of ``first``."""

    first: str
    then: str
    within_s: float = Field(gt=0)
    per_track: bool = True


class Trigger(_Model):
    """Exactly one trigger kind, as ``{kind: {params}}``."""

    cross: CrossParams | None = None
    zone: ZoneParams | None = None
    intersection: IntersectionParams | None = None
    distance: DistanceParams | None = None
    direction: DirectionParams | None = None
    stopped: StoppedParams | None = None
    speed: SpeedParams | None = None
    always: FrameParams | None = None
    occurrence: FrameParams | None = None
    instance: FrameParams | None = None
    absence: FrameParams | None = None
    count: FrameParams | None = None
    summation: FrameParams | None = None
    new_high: FrameParams | None = None
    new_low: FrameParams | None = None
    smallest: FrameParams | None = None
    largest: FrameParams | None = None
    earliest: FrameParams | None = None
    latest: FrameParams | None = None
    persistence: FrameParams | None = None
    custom: FrameParams | None = None
    all_: CompositeParams | None = Field(default=None, alias="all")
    any_: CompositeParams | None = Field(default=None, alias="any")
    not_: NotParams | None = Field(default=None, alias="not")
    for_at_least: ForAtLeastParams | None = None
    sequence: SequenceParams | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_params(cls, data: Any) -> Any:
        # ``trigger: {always: }`` or ``trigger: always`` mean "no parameters".
        if isinstance(data, str):
            data = {data: {}}
        if isinstance(data, dict):
            data = {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            given = [g.rstrip("_") for g in given]
            raise ValueError(f"give exactly one trigger kind (got {given or 'none'})")
        return self

    @property
    def kind(self) -> str:
        """The trigger's kind as written in the file, e.g. ``"cross"`` or ``"all"``."""
        name = next(k for k in type(self).model_fields if getattr(self, k) is not None)
        return name.rstrip("_")

    @property
    def children(self) -> list[str]:
        """Rule ids a composite trigger reads (empty for other kinds)."""
        p = self.params
        if self.kind in ("all", "any"):
            return list(p["rules"])
        if self.kind in ("not", "for_at_least"):
            return [p["rule"]]
        if self.kind == "sequence":
            return [p["first"], p["then"]]
        return []

    @property
    def params(self) -> dict[str, Any]:
        """The kind's parameters as a plain dict."""
        value = getattr(self, self.kind + ("_" if self.kind in ("all", "any", "not") else ""))
        return value.model_dump() if isinstance(value, BaseModel) else dict(value)


class Rule(_Model):
    """One rule: criteria -> area/anchor -> trigger -> firing."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    name: str | None = None
    enabled: bool = True
    emit: bool = True  # False: only an input of composite rules, no events of its own
    trigger: Trigger
    criteria: Criteria = Criteria()
    area: str | None = None
    anchor: Anchor = "bottom_center"
    firing: Firing = Firing()
    schedule: dict[str, Any] | None = None  # roadlens.ode.schedule.parse_schedule
    capture: dict[str, Any] | None = None
    actions: list[dict[str, Any]] | None = None

    @property
    def display_name(self) -> str:
        """``name``, or the id when no name is given."""
        return self.name or self.id


class RuleSet(_Model):
    """A validated rule file."""

    version: int = 1
    areas: dict[str, AreaSpec] = {}
    rules: list[Rule]

    def canonical_json(self) -> str:
        """The validated model as canonical JSON (sorted keys, defaults filled in)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        """Hash of :meth:`canonical_json`: the rule set's lineage key.

        Formatting, comments and key order in the YAML do not change it.
        """
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def rule(self, rule_id: str) -> Rule:
        """The rule with id ``rule_id``."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


# --- loading -------------------------------------------------------------------------------


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _rule_prefix(data: Any, index: int) -> str:
    rid = None
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        item = data["rules"][index] if index < len(data["rules"]) else None
        rid = item.get("id") if isinstance(item, dict) else None
    return f"rule {rid!r} (rules[{index}])" if rid else f"rules[{index}]"


def _format_errors(exc: ValidationError, data: Any, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        # Pydantic adds the failing union member's name ("function-after[...]") to the
        # location of model validators; drop those so the path is the file's own.
        loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
        msg = err["msg"].removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            field = _loc(loc[2:]) or "<rule>"
            lines.append(f"{_rule_prefix(data, loc[1])} field {field!r}: {msg}")
        else:
            lines.append(f"field {_loc(loc) or '<root>'!r}: {msg}")
    return f"{source}: invalid rule file:\n  " + "\n  ".join(lines)


def _frame_trigger_signature(kind: str) -> inspect.Signature | None:
    try:
        from roadlens.ode import frame_triggers
    except ImportError:
        return None
    fn = getattr(frame_triggers, kind, None)
    return inspect.signature(fn) if callable(fn) else None


def _check_geometry(rs: RuleSet) -> list[str]:
    """Areas whose geometry cannot be built (a zero-length line, a self-intersecting
    polygon), with their coordinates and the rules that use them."""
    from roadlens.ode.geometry import build_area

    problems = []
    for name, spec in rs.areas.items():
        try:
            build_area(spec)
        except ValueError as exc:
            points = getattr(spec, spec.kind)
            users = [
                r.id
                for r in rs.rules
                if name in (r.area, r.trigger.params.get("line"), r.trigger.params.get("zone"))
            ]
            used = f"; used by rule(s) {', '.join(map(repr, users))}" if users else ""
            reason = str(exc).split(": [")[0]
            problems.append(f"area {name!r} ({spec.kind} {points}): {reason}{used}")
    return problems


def _check_references(rs: RuleSet) -> list[str]:
    """Cross-field checks: unique ids, known areas of the right kind, frame-trigger params."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, rule in enumerate(rs.rules):
        where = f"rule {rule.id!r} (rules[{i}])"
        if rule.id in seen:
            problems.append(f"{where} field 'id': duplicate of rules[{seen[rule.id]}]")
        seen.setdefault(rule.id, i)
        refs: list[tuple[str, str | None, tuple[str, ...]]] = [("area", rule.area, ("polygon",))]
        kind, params = rule.trigger.kind, rule.trigger.params
        if kind == "cross":
            refs.append(("trigger.cross.line", params["line"], ("line", "polyline", "polygon")))
        if kind == "zone":
            refs.append(("trigger.zone.zone", params["zone"], ("polygon",)))
        for field, name, kinds in refs:
            if name is None:
                continue
            if name not in rs.areas:
                known = ", ".join(sorted(rs.areas)) or "none defined"
                problems.append(f"{where} field {field!r}: unknown area {name!r} (known: {known})")
            elif rs.areas[name].kind not in kinds:
                problems.append(
                    f"{where} field {field!r}: area {name!r} is a {rs.areas[name].kind}, "
                    f"expected {' or '.join(kinds)}"
                )
        if kind in POINT_TRIGGERS and rule.anchor == "any":
            problems.append(f"{where} field 'anchor': {kind} needs a point anchor, not 'any'")
        if kind in FRAME_TRIGGERS:
            problems += _check_frame_params(where, kind, params)
        for child in rule.trigger.children:
            if child not in {r.id for r in rs.rules}:
                problems.append(f"{where} field 'trigger.{kind}': unknown rule {child!r}")
            elif child == rule.id:
                problems.append(f"{where} field 'trigger.{kind}': a rule cannot read itself")
        if rule.schedule is not None:
            from roadlens.ode.schedule import ScheduleError, parse_schedule

            try:
                parse_schedule(rule.schedule)
            except ScheduleError as exc:
                problems.append(f"{where} field 'schedule': {exc}")
    if not problems:
        problems += _check_cycles(rs)
    return problems


def _check_frame_params(where: str, kind: str, params: dict[str, Any]) -> list[str]:
    """Parameters of a frame trigger checked against its function's signature."""
    sig = _frame_trigger_signature(kind)
    if sig is None:
        return []
    names = list(sig.parameters)[2:]  # after (dets, frames)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    problems = [
        f"{where} field 'trigger.{kind}.{key}': unknown parameter "
        f"(accepted: {', '.join(names) or 'none'})"
        for key in params
        if key not in names and not takes_any
    ]
    required = [
        n
        for n in names
        if sig.parameters[n].default is inspect.Parameter.empty
        and sig.parameters[n].kind is not inspect.Parameter.VAR_KEYWORD
    ]
    problems += [
        f"{where} field 'trigger.{kind}.{n}': required parameter missing"
        for n in required
        if n not in params
    ]
    problems += _check_frame_param_types(where, kind, params)
    return problems


def _check_frame_param_types(where: str, kind: str, params: dict[str, Any]) -> list[str]:
    """Values checked against the trigger function's type hints (strict: "3" is no number)."""
    from roadlens.ode import frame_triggers

    try:
        hints = typing.get_type_hints(getattr(frame_triggers, kind))
    except Exception:  # an unresolvable hint leaves the check to the function itself
        return []
    problems = []
    for key, value in params.items():
        if key not in hints:
            continue
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError as exc:
            expected = getattr(hints[key], "__name__", None) or str(hints[key])
            problems.append(
                f"{where} field 'trigger.{kind}.{key}': expected {expected}, got {value!r} "
                f"({exc.errors()[0]['msg']})"
            )
    return problems


def _check_cycles(rs: RuleSet) -> list[str]:
    """Composite rules must form a DAG."""
    children = {r.id: r.trigger.children for r in rs.rules}
    index = {r.id: i for i, r in enumerate(rs.rules)}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(rid: str, path: list[str]) -> str | None:
        if state.get(rid) == 2:
            return None
        if state.get(rid) == 1:
            return " -> ".join([*path, rid])
        state[rid] = 1
        for child in children[rid]:
            found = visit(child, [*path, rid])
            if found:
                return found
        state[rid] = 2
        return None

    for r in rs.rules:
        cycle = visit(r.id, [])
        if cycle:
            return [
                f"rule {r.id!r} (rules[{index[r.id]}]) field 'trigger.{r.trigger.kind}': "
                f"composite rules form a cycle: {cycle}"
            ]
    return []


def evaluation_order(rs: RuleSet) -> list[str]:
    """Rule ids with every composite rule after the rules it reads (file order otherwise)."""
    done: list[str] = []
    seen: set[str] = set()
    by_id = {r.id: r for r in rs.rules}

    def visit(rid: str) -> None:
        if rid in seen:
            return
        seen.add(rid)
        for child in by_id[rid].trigger.children:
            visit(child)
        done.append(rid)

    for r in rs.rules:
        visit(r.id)
    return done


def parse_rules(text_or_dict: str | dict[str, Any], source: str = "<rules>") -> RuleSet:
    """Validate a rule file given as YAML text or an already-parsed dict.

    Raises :class:`RuleError` naming the rule id and field path of every problem.

    >>> parse_rules({"rules": [{"id": "a", "trigger": "always"}]}).rules[0].id
    'a'
    """
    if isinstance(text_or_dict, str):
        try:
            data = yaml.safe_load(text_or_dict)
        except yaml.YAMLError as exc:
            raise RuleError(f"{source}: not valid YAML: {exc}") from exc
    else:
        data = text_or_dict
    if not isinstance(data, dict):
        raise RuleError(f"{source}: a rule file is a mapping with 'rules' (got {type(data)})")
    try:
        rs = RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RuleError(_format_errors(exc, data, source)) from None
    problems = _check_geometry(rs) + _check_references(rs)
    if problems:
        raise RuleError(f"{source}: invalid rule file:\n  " + "\n  ".join(problems))
    return rs


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a YAML rule file (see :func:`parse_rules`)."""
    path = Path(path)
    return parse_rules(path.read_text(encoding="utf-8"), source=str(path))
