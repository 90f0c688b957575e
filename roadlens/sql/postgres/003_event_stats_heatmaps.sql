-- Time-binned event statistics (roadlens.schema.EVENT_STATS) and sparse heat-map cells
-- (roadlens.schema.HEATMAPS), schema version 1.
--
-- event_stats has no captured_at: it is partitioned by bin_start, its time column, and the
-- export_batches manifest records bin_start's range for it. Neither table has a natural
-- unique row id in the contract, so neither has a primary key: the sink's
-- replace-per-video transaction is what keeps exactly one copy.
CREATE TABLE event_stats (
    schema_version  smallint          NOT NULL,
    video_id        text              NOT NULL,
    source_id       text              NOT NULL,
    rule_id         text              NOT NULL,
    class_name      text,
    direction       text,
    bin_minutes     smallint          NOT NULL,
    bin_start       timestamptz       NOT NULL,
    count           bigint            NOT NULL,
    value           double precision
) PARTITION BY RANGE (bin_start);

CREATE INDEX event_stats_bin_start_brin ON event_stats
    USING brin (bin_start) WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX event_stats_source_time ON event_stats (source_id, bin_start);
CREATE INDEX event_stats_rule_time ON event_stats (rule_id, bin_start);
CREATE INDEX event_stats_video ON event_stats (video_id);

CREATE TABLE heatmaps (
    schema_version  smallint          NOT NULL,
    video_id        text              NOT NULL,
    source_id       text              NOT NULL,
    heatmap_id      text              NOT NULL,
    space           text              NOT NULL,
    weight          text              NOT NULL,
    captured_at     timestamptz       NOT NULL,
    grid_w          integer,
    grid_h          integer,
    col             integer,
    "row"           integer,
    cell_id         text,
    lat             double precision,
    lon             double precision,
    value           double precision  NOT NULL
) PARTITION BY RANGE (captured_at);

CREATE INDEX heatmaps_captured_at_brin ON heatmaps
    USING brin (captured_at) WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX heatmaps_source_time ON heatmaps (source_id, captured_at);
CREATE INDEX heatmaps_heatmap ON heatmaps (heatmap_id, space);
CREATE INDEX heatmaps_video ON heatmaps (video_id);
