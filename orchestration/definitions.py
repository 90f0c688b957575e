"""The RoadLens code location: ``dagster dev -m orchestration.definitions``."""

import dagster as dg

from assets.ode import ODE_ASSETS
from assets.sinks import SINK_ASSETS
from assets.spine import detections, enriched_detections, frames, videos
from orchestration.jobs import spine_job
from orchestration.schedules import nightly_spine_schedule
from orchestration.sensors import landing_sensor
from resources import DetectorResource, LakeResource, SinksResource, SourcesResource
from resources.rules import RulesResource

defs = dg.Definitions(
    assets=[videos, frames, detections, enriched_detections, *ODE_ASSETS, *SINK_ASSETS],
    jobs=[spine_job],
    schedules=[nightly_spine_schedule],
    sensors=[landing_sensor],
    resources={
        "lake": LakeResource(),
        "sources": SourcesResource(),
        "detector": DetectorResource(),
        "sinks": SinksResource(),
        "rules": RulesResource(),
    },
)
