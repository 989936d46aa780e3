-- $database.stats_hourly: counts and money sums (integer micro-units) by hour x event type x
-- clickhouse_loader.stats.dimensions. Kept by stats_hourly_mv. Rows with the same key are
-- summed when parts merge, so read it with GROUP BY and sum():
--   SELECT hour, campaign_id, sum(events), sum(cost_micros) FROM stats_hourly WHERE ... GROUP BY ...
-- source_block names one Kafka block (topic/partition/first offset) a row came from. It is
-- not summed; it exists so that two different blocks with equal sums are never taken for
-- the same block by deduplication (which would drop the second).
CREATE TABLE IF NOT EXISTS $database.stats_hourly
(
    hour DateTime('UTC'),
    type String,
$dimension_columns,
    events UInt64,
$sum_columns,
    source_block String
)
ENGINE = ReplicatedSummingMergeTree('$zookeeper_path/$database/stats_hourly', '$replica', (events, $sums))
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, type, $dimensions)
SETTINGS index_granularity = 8192, replicated_deduplication_window = $replicated_deduplication_window
