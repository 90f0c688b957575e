-- The manifest: one row per (table, video) that the sink has committed, written in the same
-- transaction as the rows it describes. committed() reads fingerprints from here, and a
-- re-write uses the previous time range to delete only from the partitions that hold the
-- video's rows. For event_stats the time range is that of bin_start.
CREATE TABLE export_batches (
    table_name       text         NOT NULL,
    video_id         text         NOT NULL,
    export_id        text         NOT NULL,
    fingerprint      text         NOT NULL DEFAULT '',
    rows             bigint       NOT NULL CHECK (rows >= 0),
    bytes            bigint       NOT NULL CHECK (bytes >= 0),
    min_captured_at  timestamptz,
    max_captured_at  timestamptz,
    committed_at     timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, video_id),
    CHECK ((rows = 0) = (min_captured_at IS NULL AND max_captured_at IS NULL))
);

CREATE INDEX export_batches_committed_at ON export_batches (committed_at);
