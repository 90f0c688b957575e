"""Asset jobs: the spine and its sinks for one capture date."""

import dagster as dg

from orchestration.partitions import capture_date

spine_job = dg.define_asset_job(
    "spine_job",
    selection=dg.AssetSelection.groups("spine", "sinks"),
    partitions_def=capture_date,
    description=(
        "Register, sample, detect and enrich the videos of one capture date, then export them "
        "to every sink that is switched on."
    ),
    tags={"lane": "batch"},
)
