"""Object-Detection-Event (ODE) rules over detections, as vectorized pandas.

Rule files (:mod:`roadlens.ode.rules`) name areas (:mod:`roadlens.ode.geometry`), criteria
(:mod:`roadlens.ode.criteria`) and a trigger (:mod:`roadlens.ode.spatial`,
:mod:`roadlens.ode.frame_triggers`); :func:`evaluate` turns detections into events in the
EVENTS contract. No Dagster here: the assets are thin wrappers.

Example:
    >>> from roadlens.ode import parse_rules
    >>> parse_rules({"rules": [{"id": "all", "trigger": "always"}]}).rules[0].trigger.kind
    'always'
"""

from roadlens.ode.criteria import criteria_mask
from roadlens.ode.engine import evaluate, evaluate_hits, evaluate_to_table, frames_from_detections
from roadlens.ode.geometry import ANCHORS, Line, Polygon, Polyline, anchor_points, build_area
from roadlens.ode.hits import HIT_COLUMNS, conform_hits, empty_hits
from roadlens.ode.rules import RuleError, RuleSet, load_rules, parse_rules

__all__ = [
    "ANCHORS",
    "HIT_COLUMNS",
    "Line",
    "Polygon",
    "Polyline",
    "RuleError",
    "RuleSet",
    "anchor_points",
    "build_area",
    "conform_hits",
    "criteria_mask",
    "empty_hits",
    "evaluate",
    "evaluate_hits",
    "evaluate_to_table",
    "frames_from_detections",
    "load_rules",
    "parse_rules",
]
