"""Asset jobs: the spine, the ODE stage and the sinks for one capture date."""

import dagster as dg

from orchestration.partitions import capture_date

spine_job = dg.define_asset_job(
    "spine_job",
    selection=dg.AssetSelection.groups("spine", "ode", "sinks"),
    partitions_def=capture_date,
    description=(
        "Register, sample, detect and enrich the videos of one capture date, evaluate the ODE "
        "rules and heat maps, then export to every sink that is switched on."
    ),
    tags={"lane": "batch"},
)
