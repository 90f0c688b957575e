"""RoadLens on Dagster: the assets, resources and orchestration (jobs, sensors, schedules) over
the ``roadlens`` domain package, and the ``roadlens`` commands that run them.

The code location is :mod:`roadlens_dagster.orchestration.definitions`.
"""
