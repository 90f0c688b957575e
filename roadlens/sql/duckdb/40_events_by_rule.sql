-- requires: events
-- Rule events per source, rule, direction and hour, with the rule set that produced them.
CREATE OR REPLACE VIEW events_by_rule AS
SELECT
    date,
    source_id,
    rule_id,
    any_value(rule_name) AS rule_name,
    direction,
    date_trunc('hour', captured_at) AS hour,
    count(*) AS events,
    count(DISTINCT (video_id, track_id)) FILTER (WHERE track_id IS NOT NULL) AS tracks,
    sum(value) AS value,
    min(rule_set_sha256) AS rule_set_sha256,
    count(DISTINCT rule_set_sha256) AS rule_sets
FROM events
GROUP BY date, source_id, rule_id, direction, hour;
