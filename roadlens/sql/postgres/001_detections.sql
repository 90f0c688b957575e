-- RoadLens detections, schema version 1: one row per detected box, column for column the
-- Arrow schema roadlens.schema.DETECTIONS (float32 -> real, float64 -> double precision,
-- timestamp[us, UTC] -> timestamptz, the deterministic UUIDv8 id -> uuid).
--
-- The migration runner (roadlens.sinks.postgres.upgrade) sets search_path to the target
-- schema, so nothing here names a schema. Partitions are monthly ranges of captured_at,
-- created on demand by the sink (<table>_yYYYYmMM); every index below is declared on the
-- parent and therefore built on each partition as it is attached.
CREATE TABLE detections (
    schema_version  smallint          NOT NULL,
    detection_id    uuid              NOT NULL,
    video_id        text              NOT NULL,
    source_id       text              NOT NULL,
    vehicle_id      text,
    session_id      text,
    frame_number    bigint            NOT NULL,
    pts_sec         double precision  NOT NULL,
    captured_at     timestamptz       NOT NULL,
    ingested_at     timestamptz       NOT NULL,
    class_id        integer           NOT NULL,
    class_name      text              NOT NULL,
    confidence      real              NOT NULL,
    x1              real              NOT NULL,
    y1              real              NOT NULL,
    x2              real              NOT NULL,
    y2              real              NOT NULL,
    frame_width     integer           NOT NULL,
    frame_height    integer           NOT NULL,
    anchor_u        real              NOT NULL,
    anchor_v        real              NOT NULL,
    track_id        bigint,
    lat             double precision,
    lon             double precision,
    heading_deg     real,
    speed_mps       real,
    gps_age_s       real,
    model_name      text              NOT NULL,
    model_sha256    text              NOT NULL,
    -- A unique key on a partitioned table must contain the partition key. The id already
    -- encodes captured_at in its top 48 bits, so this is unique on detection_id alone, and
    -- being time-ordered it appends at the right edge of the btree (+59 % COPY speed
    -- over random ids, research/sinks.md section 0).
    PRIMARY KEY (detection_id, captured_at)
) PARTITION BY RANGE (captured_at);

-- Time ranges: a BRIN index is a few kB per partition and costs almost nothing to maintain,
-- because each video is loaded as one contiguous, time-ordered run of heap pages.
-- autosummarize lets autovacuum summarize new block ranges without a manual VACUUM.
CREATE INDEX detections_captured_at_brin ON detections
    USING brin (captured_at) WITH (pages_per_range = 32, autosummarize = on);

-- Per source (vehicle or camera) over a time window.
CREATE INDEX detections_source_time ON detections (source_id, captured_at);

-- The sink replaces a video's rows; this makes that delete an index probe per partition.
-- All of a video's rows share one key, so btree deduplication keeps it small and cheap.
CREATE INDEX detections_video ON detections (video_id);

-- Geo boxes: a drive moves steadily, so each block range covers a small lat/lon box and a
-- multi-column BRIN prunes well for a fraction of a GiST index's load cost
-- (see docs/sinks/postgres.md for the measurements).
CREATE INDEX detections_geo_brin ON detections
    USING brin (lat, lon) WITH (pages_per_range = 32, autosummarize = on);
