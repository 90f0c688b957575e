"""Dagster resources: thin configuration shells over ``roadlens`` objects."""

from roadlens_dagster.resources.detector import DetectorResource
from roadlens_dagster.resources.lake import LakeResource
from roadlens_dagster.resources.sinks import SinksResource
from roadlens_dagster.resources.sources import SourcesResource

__all__ = [
    "DetectorResource",
    "LakeResource",
    "SinksResource",
    "SourcesResource",
]
