"""RoadLens: turn road video into data.

The domain library: frames, detections, GPS enrichment and the Parquet lake, with no
Dagster imports. The Dagster assets in ``roadlens_dagster/assets/`` are thin wrappers over
this package.
"""

__version__ = "0.1.0"
