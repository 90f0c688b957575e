"""Dagster resources: thin configuration shells over ``roadlens`` objects."""

from resources.detector import DetectorResource
from resources.lake import LakeResource
from resources.sinks import SinksResource
from resources.sources import SourcesResource

__all__ = [
    "DetectorResource",
    "LakeResource",
    "SinksResource",
    "SourcesResource",
]
