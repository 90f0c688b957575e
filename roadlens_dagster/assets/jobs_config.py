"""The asset names of ``spine_job``, which all take the same micro-batch config."""

from roadlens_dagster.assets.batch import SPINE_ASSETS
from roadlens_dagster.assets.ode import ODE_ASSETS
from roadlens_dagster.assets.sinks import SINK_ASSET_NAMES

ODE_ASSET_NAMES = tuple(a.key.to_user_string() for a in ODE_ASSETS)
JOB_ASSET_NAMES = SPINE_ASSETS + ODE_ASSET_NAMES + SINK_ASSET_NAMES
