-- Quarantined rows, schema version 1: column for column roadlens.quality.quarantine.QUARANTINE
-- (list<string> -> text[], the row's JSON text -> jsonb). One row per input row that failed
-- a row-level expectation of the quality suites, kept whole in row_json.
--
-- Not partitioned: quarantined rows are rare (a healthy video has none), and the sink
-- replaces a video's rows of one source table at a time (delete + COPY in one
-- transaction), which the (table_name, video_id) index serves.
CREATE TABLE quarantine (
    table_name      text         NOT NULL,
    row_id          text,
    video_id        text         NOT NULL,
    source_id       text,
    partition_key   text,
    run_id          text,
    reasons         text[]       NOT NULL,
    row_json        jsonb        NOT NULL,
    quarantined_at  timestamptz  NOT NULL,
    schema_version  smallint     NOT NULL
);

CREATE INDEX quarantine_table_video ON quarantine (table_name, video_id);
CREATE INDEX quarantine_quarantined_at ON quarantine (quarantined_at);
