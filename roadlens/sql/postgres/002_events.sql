-- RoadLens rule events, schema version 1: column for column roadlens.schema.EVENTS
-- (list<string> -> text[], the JSON text of attributes -> jsonb).
CREATE TABLE events (
    schema_version   smallint          NOT NULL,
    event_id         uuid              NOT NULL,
    rule_id          text              NOT NULL,
    rule_name        text              NOT NULL,
    "trigger"        text              NOT NULL,
    video_id         text              NOT NULL,
    source_id        text              NOT NULL,
    vehicle_id       text,
    session_id       text,
    frame_number     bigint            NOT NULL,
    pts_sec          double precision  NOT NULL,
    captured_at      timestamptz       NOT NULL,
    track_id         bigint,
    class_name       text,
    direction        text,
    value            double precision,
    detection_ids    text[],
    lat              double precision,
    lon              double precision,
    media_paths      text[],
    attributes       jsonb,
    rule_set_sha256  text              NOT NULL,
    model_sha256     text              NOT NULL,
    PRIMARY KEY (event_id, captured_at)
) PARTITION BY RANGE (captured_at);

CREATE INDEX events_captured_at_brin ON events
    USING brin (captured_at) WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX events_source_time ON events (source_id, captured_at);
-- Events are few (thousands per video), so a btree per rule is affordable.
CREATE INDEX events_rule_time ON events (rule_id, captured_at);
CREATE INDEX events_video ON events (video_id);
CREATE INDEX events_geo_brin ON events
    USING brin (lat, lon) WITH (pages_per_range = 32, autosummarize = on);
