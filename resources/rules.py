"""The ODE rule set: a YAML file, validated once per run; its hash is the events' lineage."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from roadlens.ode.rules import RuleSet, load_rules

EXAMPLE_RULES = Path(__file__).resolve().parents[1] / "rules" / "examples.yaml"


class RulesResource(dg.ConfigurableResource):
    """``path`` (default ``$ROADLENS_RULES``, else the project's ``rules/examples.yaml``)."""

    path: str = ""

    def rules_path(self) -> Path:
        return Path(self.path or os.environ.get("ROADLENS_RULES") or EXAMPLE_RULES)

    def rule_set(self) -> RuleSet:
        return load_rules(self.rules_path())
