"""The asset names of ``spine_job``, which all take the same micro-batch config."""

from assets.batch import SPINE_ASSETS
from assets.ode import ODE_ASSETS
from assets.sinks import SINK_ASSET_NAMES

ODE_ASSET_NAMES = tuple(a.key.to_user_string() for a in ODE_ASSETS)
JOB_ASSET_NAMES = SPINE_ASSETS + ODE_ASSET_NAMES + SINK_ASSET_NAMES
