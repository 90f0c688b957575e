"""The RoadLens code location: ``dagster dev -m roadlens_dagster.orchestration.definitions``."""

import dagster as dg

from roadlens_dagster.assets.checks import QUALITY_CHECKS
from roadlens_dagster.assets.ode import ODE_ASSETS, rule_files
from roadlens_dagster.assets.sinks import SINK_ASSETS
from roadlens_dagster.assets.spine import SPINE
from roadlens_dagster.orchestration.executors import spine_job_celery
from roadlens_dagster.orchestration.jobs import spine_job
from roadlens_dagster.orchestration.schedules import nightly_spine_schedule
from roadlens_dagster.orchestration.sensors import landing_sensor, rule_files_job, rule_files_sensor
from roadlens_dagster.resources import (
    DetectorResource,
    LakeResource,
    SinksResource,
    SourcesResource,
)
from roadlens_dagster.resources.rules import RulesResource

defs = dg.Definitions(
    assets=[*SPINE, rule_files, *ODE_ASSETS, *SINK_ASSETS],
    asset_checks=[*QUALITY_CHECKS],
    jobs=[spine_job, spine_job_celery, rule_files_job],
    schedules=[nightly_spine_schedule],
    sensors=[landing_sensor, rule_files_sensor],
    resources={
        "lake": LakeResource(),
        "sources": SourcesResource(),
        "detector": DetectorResource(),
        "sinks": SinksResource(),
        "rules": RulesResource(),
    },
)
