"""The RoadLens code location: ``dagster dev -m orchestration.definitions``."""

import dagster as dg

from assets.checks import QUALITY_CHECKS
from assets.ode import ODE_ASSETS, rule_files
from assets.sinks import SINK_ASSETS
from assets.spine import SPINE
from orchestration.executors import spine_job_celery
from orchestration.jobs import spine_job
from orchestration.schedules import nightly_spine_schedule
from orchestration.sensors import landing_sensor, rule_files_job, rule_files_sensor
from resources import DetectorResource, LakeResource, SinksResource, SourcesResource
from resources.rules import RulesResource

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
