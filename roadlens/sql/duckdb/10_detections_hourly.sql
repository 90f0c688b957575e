-- requires: detections
-- Detections per source, class and hour: the first chart of every fleet dashboard.
CREATE OR REPLACE VIEW detections_hourly AS
SELECT
    date,
    source_id,
    date_trunc('hour', captured_at) AS hour,
    class_name,
    count(*) AS detections,
    count(DISTINCT (video_id, track_id)) FILTER (WHERE track_id IS NOT NULL) AS tracks,
    avg(confidence) AS mean_confidence
FROM detections
GROUP BY ALL;
