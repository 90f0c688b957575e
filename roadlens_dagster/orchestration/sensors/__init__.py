from roadlens_dagster.orchestration.sensors.landing import landing_sensor
from roadlens_dagster.orchestration.sensors.rules import rule_files_job, rule_files_sensor

__all__ = ["landing_sensor", "rule_files_job", "rule_files_sensor"]
