-- requires: videos, detections
-- Per video: capture time, GPS coverage and detections by class.
CREATE OR REPLACE VIEW video_summary AS
SELECT
    v.video_id,
    v.source_id,
    v.vehicle_id,
    v.capture_start,
    v.capture_time_source,
    count(d.detection_id) AS detections,
    count(DISTINCT d.track_id) AS tracks,
    avg(CASE WHEN d.lat IS NOT NULL THEN 1.0 ELSE 0.0 END) AS gps_coverage
FROM videos v
LEFT JOIN detections d USING (video_id)
GROUP BY ALL;
