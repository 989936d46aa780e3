-- Aggregates every block inserted into events_input into stats_hourly. The result depends
-- only on the block, so a retried block gives the identical stats block, which
-- stats_hourly drops. min(kafka_offset) differs between any two different blocks.
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.stats_hourly_mv TO $database.stats_hourly
AS SELECT
    toStartOfHour(time) AS hour,
    type,
    $dimensions,
    count() AS events,
    $sum_exprs,
    concat(any(kafka_topic), '/', toString(any(kafka_partition)), '/', toString(min(kafka_offset))) AS source_block
FROM $database.events_input
GROUP BY hour, type, $dimensions
