"""Rule files: validation errors name the rule id and the field; the hash is canonical."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from roadlens.ode.rules import RuleError, evaluation_order, load_rules, parse_rules
from tests.conftest import REPO

EXAMPLES = REPO / "roadlens_dagster" / "rules" / "examples.yaml"

BASE = {
    "version": 1,
    "areas": {
        "stop-line": {"line": [[0, 400], [1280, 400]]},
        "lot": {"polygon": [[0, 0], [100, 0], [100, 100]]},
    },
    "rules": [
        {"id": "everything", "trigger": "always"},
        {"id": "cars", "criteria": {"classes": ["car"]}, "trigger": {"instance": {}}},
        {"id": "stop-line", "trigger": {"cross": {"line": "stop-line"}}},
    ],
}


def with_rule(index: int, **changes: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["rules"][index].update(changes)
    return data


def error_of(data: object) -> str:
    with pytest.raises(RuleError) as exc:
        parse_rules(data)  # type: ignore[arg-type]
    return str(exc.value)


def test_examples_file_validates() -> None:
    rs = load_rules(EXAMPLES)
    assert len(rs.rules) >= 10
    kinds = {r.trigger.kind for r in rs.rules}
    assert {"cross", "zone", "count", "absence", "distance", "for_at_least"} <= kinds
    # Composite rules come after the rules they read.
    order = evaluation_order(rs)
    assert order.index("wrong-way") < order.index("wrong-way-sustained")


def test_unknown_area_names_rule_and_field() -> None:
    msg = error_of(with_rule(2, trigger={"cross": {"line": "stopline"}}))
    assert "rule 'stop-line' (rules[2]) field 'trigger.cross.line': unknown area 'stopline'" in msg


def test_area_of_the_wrong_kind() -> None:
    msg = error_of(with_rule(1, area="stop-line"))
    assert "rule 'cars' (rules[1]) field 'area': area 'stop-line' is a line" in msg


def test_type_and_range_errors_name_the_field() -> None:
    msg = error_of(with_rule(1, criteria={"confidence_min": 1.5}))
    assert "rule 'cars' (rules[1]) field 'criteria.confidence_min'" in msg
    msg = error_of(with_rule(1, criteria={"width_min": 50, "width_max": 10}))
    assert "rule 'cars' (rules[1]) field 'criteria'" in msg and "width_min" in msg
    msg = error_of(with_rule(1, criteria={"colour": "red"}))
    assert "field 'criteria.colour': Extra inputs are not permitted" in msg
    msg = error_of(with_rule(2, trigger={"cross": {"line": "stop-line", "hysteresis_px": -1}}))
    assert "rule 'stop-line' (rules[2]) field 'trigger.cross.hysteresis_px'" in msg
    msg = error_of(with_rule(1, anchor="middle"))
    assert "rule 'cars' (rules[1]) field 'anchor'" in msg


def test_trigger_kind_errors() -> None:
    msg = error_of(with_rule(1, trigger={"crossing": {}}))
    assert "rule 'cars' (rules[1]) field 'trigger.crossing'" in msg
    msg = error_of(with_rule(1, trigger={"always": {}, "absence": {}}))
    assert "rule 'cars' (rules[1]) field 'trigger'" in msg and "exactly one" in msg
    msg = error_of(with_rule(1, trigger={"count": {"minimum": 3}}))
    assert "rule 'cars' (rules[1]) field 'trigger.count.minimum': unknown parameter" in msg
    msg = error_of(with_rule(2, anchor="any"))
    assert "rule 'stop-line' (rules[2]) field 'anchor': cross needs a point anchor" in msg


def test_rule_ids_and_references() -> None:
    msg = error_of(with_rule(1, id="everything"))
    assert "rule 'everything' (rules[1]) field 'id': duplicate of rules[0]" in msg
    msg = error_of(with_rule(1, id="bad id!"))
    assert "rules[1]" in msg and "field 'id'" in msg
    msg = error_of(with_rule(1, trigger={"all": {"rules": ["everything", "nope"]}}))
    assert "rule 'cars' (rules[1]) field 'trigger.all': unknown rule 'nope'" in msg
    data = with_rule(0, trigger={"not": {"rule": "cars"}})
    data["rules"][1]["trigger"] = {"not": {"rule": "everything"}}
    assert "form a cycle" in error_of(data)


def test_schedule_and_area_errors() -> None:
    msg = error_of(with_rule(1, schedule={"timezone": "Mars/Olympus"}))
    assert "rule 'cars' (rules[1]) field 'schedule': timezone" in msg
    data = with_rule(0)
    data["areas"]["bad"] = {"line": [[0, 0], [1, 1]], "polygon": [[0, 0], [1, 0], [1, 1]]}
    assert "field 'areas.bad'" in error_of(data)
    data = with_rule(0)
    data["areas"]["norm"] = {"polygon": [[0, 0], [2, 0], [1, 1]], "normalized": True}
    assert "normalized coordinates" in error_of(data)


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="not valid YAML"):
        parse_rules("rules: [\n")
    with pytest.raises(RuleError, match="mapping"):
        parse_rules("- a\n- b\n")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_rule(2, trigger={"cross": {"line": "x"}})))
    with pytest.raises(RuleError, match=str(path)):
        load_rules(path)


def test_sha256_is_canonical() -> None:
    a = parse_rules(BASE)
    # Reordered keys, comments and explicit defaults do not change the hash ...
    text = "# comment\n" + yaml.safe_dump(BASE, sort_keys=False)
    b = parse_rules(text)
    explicit = with_rule(1, anchor="bottom_center", firing={"mode": "edge"})
    assert a.sha256() == b.sha256() == parse_rules(explicit).sha256()
    # ... but any change of meaning does.
    assert parse_rules(with_rule(1, criteria={"classes": ["truck"]})).sha256() != a.sha256()
    assert len(a.sha256()) == 64


def test_trigger_forms() -> None:
    rs = parse_rules(
        {"rules": [{"id": "a", "trigger": "always"}, {"id": "b", "trigger": {"absence": None}}]}
    )
    assert [r.trigger.kind for r in rs.rules] == ["always", "absence"]
    assert rs.rules[1].trigger.params == {}
    assert rs.rule("b").display_name == "b"


ROAD = [[[400, 700], [0, 0]], [[880, 700], [3.5, 0]], [[700, 400], [3.5, 30]],
        [[580, 400], [0, 30]]]  # fmt: skip


def test_speed_ground_scale_forms() -> None:
    h = [[0.05, 0, 0], [0, 0.1, 0], [0, 0, 1]]
    rs = parse_rules(with_rule(2, trigger={"speed": {"min": 1, "homography": h}}))
    assert rs.rules[2].trigger.params["homography"] == h
    rs = parse_rules(with_rule(2, trigger={"stopped": {"max_speed": 0.5, "ground_points": ROAD}}))
    assert len(rs.rules[2].trigger.params["ground_points"]) == 4
    # Rules without a homography keep their hash (None fields are left out of it).
    plain = parse_rules(with_rule(2, trigger={"speed": {"min": 1, "metres_per_pixel": 0.1}}))
    assert "homography" not in plain.canonical_json()


def test_speed_ground_scale_errors_name_rule_and_field() -> None:
    singular = [[1, 2, 3], [2, 4, 6], [0, 0, 1]]
    msg = error_of(with_rule(2, trigger={"speed": {"homography": singular}}))
    assert "rule 'stop-line' (rules[2]) field 'trigger.speed.homography'" in msg
    assert "singular" in msg
    msg = error_of(with_rule(2, trigger={"speed": {"homography": [[1, 0, 0], [0, 1, 0]]}}))
    assert "field 'trigger.speed.homography'" in msg
    collinear = [[[0, 0], [0, 0]], [[1, 0], [1, 0]], [[2, 0], [2, 0]], [[0, 1], [0, 1]]]
    msg = error_of(with_rule(2, trigger={"stopped": {"max_speed": 1, "ground_points": collinear}}))
    assert "rule 'stop-line' (rules[2]) field 'trigger.stopped.ground_points'" in msg
    assert "degenerate" in msg
    msg = error_of(with_rule(2, trigger={"stopped": {"max_speed": 1, "ground_points": ROAD[:3]}}))
    assert "field 'trigger.stopped.ground_points'" in msg and "at least 4" in msg
    both = {"min": 1, "metres_per_pixel": 0.1, "ground_points": ROAD}
    msg = error_of(with_rule(2, trigger={"speed": both}))
    assert "rule 'stop-line' (rules[2]) field 'trigger.speed'" in msg
    assert "at most one of metres_per_pixel, homography, ground_points" in msg


def test_geometry_errors_name_the_file_area_coordinates_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "bad-geometry.yaml"
    path.write_text(
        "version: 1\n"
        "areas:\n"
        "  bowtie: {polygon: [[0, 0], [10, 10], [10, 0], [0, 10]]}\n"
        "  dot: {line: [[5, 5], [5, 5]]}\n"
        "rules:\n"
        "  - {id: in-bowtie, trigger: {zone: {zone: bowtie}}}\n"
        "  - {id: over-dot, trigger: {cross: {line: dot}}}\n"
    )
    with pytest.raises(RuleError) as raised:
        load_rules(path)
    text = str(raised.value)
    assert str(path) in text
    assert "area 'bowtie' (polygon [(0.0, 0.0), (10.0, 10.0)" in text
    assert "self-intersecting" in text and "used by rule(s) 'in-bowtie'" in text
    assert "area 'dot' (line ((5.0, 5.0), (5.0, 5.0))): a line needs two distinct points" in text
    assert "used by rule(s) 'over-dot'" in text
