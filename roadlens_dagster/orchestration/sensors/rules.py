"""The rule-file sensor: an edited rule file is observed at once, so its new hash is lineage.

Observing ``rule_files`` records the files' combined sha256 as a new data version; Dagster
then marks ``events`` and everything downstream of it stale (and nothing upstream),
which the UI shows per partition. The cursor is the last observed hash, so an unchanged
file costs one hash per tick and requests nothing.
"""

import dagster as dg

from roadlens.ode.rules import RuleError
from roadlens_dagster.assets.ode import rule_file_hashes, rule_files, rule_set_version
from roadlens_dagster.resources import SourcesResource
from roadlens_dagster.resources.rules import RulesResource

rule_files_job = dg.define_asset_job(
    "rule_files_job",
    selection=dg.AssetSelection.assets(rule_files.key),
    description="Observe the ODE rule files (validate them and record their hash).",
)


@dg.sensor(
    job=rule_files_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Hashes the rule files every 30 s and requests an observation of rule_files when "
        "the hash changes, so the events they produced show as stale; an invalid edit is "
        "named in the tick and the last good version stays current."
    ),
)
def rule_files_sensor(
    context: dg.SensorEvaluationContext, rules: RulesResource, sources: SourcesResource
) -> dg.SensorResult:
    """Request an observation of ``rule_files`` whenever their combined hash changes."""
    try:
        version = rule_set_version(rule_file_hashes(rules, sources))
    except (RuleError, OSError) as exc:
        # An invalid edit is reported and not observed: the last good rules stay current.
        return dg.SensorResult(skip_reason=f"rule file invalid: {exc}")
    if version == context.cursor:
        return dg.SensorResult(skip_reason="rule files unchanged")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"rules-{version}")],
        cursor=version,
    )
