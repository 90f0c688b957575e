"""The ODE rule set: a YAML file, validated once per run; its hash is the events' lineage."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from roadlens.ode.rules import RuleSet, load_rules

EXAMPLE_RULES = Path(__file__).resolve().parents[1] / "rules" / "examples.yaml"


class RulesResource(dg.ConfigurableResource):
    """``path`` (default ``$ROADLENS_RULES``, else the project's ``roadlens_dagster/rules/examples.yaml``)."""

    path: str = ""

    def rules_path(self) -> Path:
        return Path(self.path or os.environ.get("ROADLENS_RULES") or EXAMPLE_RULES)

    def rule_set(self, path: Path | None = None) -> RuleSet:
        """The deployment's rule set, or the one at ``path`` (a source's own file); cached."""
        resolved = Path(path or self.rules_path()).resolve()
        cache = self._cache()
        if resolved not in cache:
            cache[resolved] = load_rules(resolved)
        return cache[resolved]

    def _cache(self) -> dict[Path, RuleSet]:
        # One validation per file per run: ConfigurableResource instances are per run.
        if not hasattr(self, "_rule_sets"):
            object.__setattr__(self, "_rule_sets", {})
        return self._rule_sets  # type: ignore[attr-defined]
