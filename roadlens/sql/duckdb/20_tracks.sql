-- requires: detections
-- One row per tracked object: when and where it was first and last seen, and for how long.
CREATE OR REPLACE VIEW tracks AS
SELECT
    video_id,
    track_id,
    any_value(source_id) AS source_id,
    any_value(vehicle_id) AS vehicle_id,
    mode(class_name) AS class_name,
    count(*) AS detections,
    min(captured_at) AS first_seen,
    max(captured_at) AS last_seen,
    date_diff('millisecond', min(captured_at), max(captured_at)) / 1000.0 AS dwell_s,
    avg(confidence) AS mean_confidence,
    arg_min(lat, captured_at) AS first_lat,
    arg_min(lon, captured_at) AS first_lon,
    arg_max(lat, captured_at) AS last_lat,
    arg_max(lon, captured_at) AS last_lon
FROM detections
WHERE track_id IS NOT NULL
GROUP BY video_id, track_id;
