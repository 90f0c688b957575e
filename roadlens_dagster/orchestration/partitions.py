"""Every partitions definition in one place.

Assets are partitioned by capture date; inside a date the unit of work is the video
(named in run config), never a dynamic partition per video.
"""

import dagster as dg

capture_date = dg.DailyPartitionsDefinition(start_date="2020-01-01", end_offset=1, timezone="UTC")
